"""Results neither lost nor mislabelled (issue: hardening): permissions, races, plans, retries, signals."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
COUNTER = "harness.workloads:counter"
SCORE_COUNTER = "harness.workloads:score_counter"


@pytest.fixture(autouse=True)
def fast_counter(monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0")


def _job(tmp_path: Path, prompts: list[str], steps: int = 3, name: str = "t", **extra) -> Path:
    pfile = tmp_path / "cat.txt"
    pfile.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    job = {"name": name, "prompts": str(pfile), "methods": ["sds"], "models": "tiny",
           "overrides": {"steps": steps}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _bench(job: Path, results: Path, *extra: str, workload: str = COUNTER) -> int:
    return main(["benchmark", "--job", str(job), "--results", str(results), "--workload", workload, *extra])


# ----------------------------------------------------------------------------------------------
# 9: outputs are as readable as the umask allows, not 0600


def test_every_file_a_run_writes_honours_the_umask(tmp_path):
    from generators.io import atomic_write_bytes

    old = os.umask(0o022)
    try:
        results = tmp_path / "results"
        assert _bench(_job(tmp_path, ["a red apple"]), results) == 0
        files = [p for p in results.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
        assert {p.name for p in files} >= {"status.json", "attempts.json", "spec.json", "counter.json",
                                           "rows.json", "plan.json", "job.yaml"}
        modes = {str(p.relative_to(results)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
        assert set(modes.values()) == {"0o644"}, modes
        os.umask(0o027)
        assert stat.S_IMODE(atomic_write_bytes(tmp_path / "x.bin", b"x").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_the_embedded_model_folders_are_built_readable(tmp_path):
    from generators.models.tiny import ensure_tiny_set

    old = os.umask(0o022)
    try:
        root = ensure_tiny_set(cache_root=tmp_path / "cache")
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
