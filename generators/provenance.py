"""What made a run: the code version (git commit) and the versions of the packages that compute it.

Recorded in each run's status.json (generators/train.py) and read by `harness status`, which lists
finished runs made by another code version. No torch import here: the harness reads it too.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# the packages whose versions change what a run computes (recorded in status.json)
PROVENANCE_PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "peft", "gsplat", "numpy",
                       "open_clip_torch", "accelerate")


@lru_cache(maxsize=1)
def code_version() -> str:
    """The repository's git commit, '+dirty' with uncommitted changes; 'unknown' outside git."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


@lru_cache(maxsize=1)
def package_versions() -> dict:
    out = {}
    for name in PROVENANCE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_provenance() -> dict:
    """{code_version, packages}: what made a run (status.json)."""
    return {"code_version": code_version(), "packages": package_versions()}
