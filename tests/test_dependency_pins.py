"""pyproject.toml's floors and constraints.txt's pins agree with each other and with this environment.

The packages whose versions move numbers (sampling, schedulers, attention kernels, LoRA, the
rasterizer, what the hub resolves) are pinned at the tested versions; the floors in pyproject are
the first releases with what the code calls, so every pin must satisfy them.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NUMBER_MOVING = ["diffusers", "transformers", "peft", "open-clip-torch", "gsplat", "huggingface-hub", "torch"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier  # one exact pin per line
            assert spec.operator == "==", f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _dependencies() -> dict[str, Requirement]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(Requirement(d).name): Requirement(d) for d in deps}


def test_number_moving_packages_are_pinned_and_the_pins_satisfy_the_floors():
    pins, deps = _pins(), _dependencies()
    missing = [p for p in NUMBER_MOVING if canonicalize_name(p) not in pins]
    assert not missing, f"constraints.txt does not pin {missing}"
    for name, version in pins.items():
        if name in deps:
            assert deps[name].specifier.contains(version), f"pin {name}=={version} breaks pyproject's {deps[name]}"


@pytest.mark.parametrize("name", ["diffusers", "transformers"])
def test_floors_cover_the_dtype_keyword_of_from_pretrained(name):
    # loader.py passes dtype= (not torch_dtype=): diffusers 0.40 and transformers 4.56 first took it
    floor = {"diffusers": "0.40", "transformers": "4.56"}[name]
    spec = _dependencies()[name].specifier
    assert not spec.contains("0.39.0" if name == "diffusers" else "4.55.4"), f"{name} floor below {floor}"
    assert spec.contains(_pins()[name])


def test_the_environment_runs_the_pinned_versions():
    wrong = {}
    for name, version in _pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.split("+")[0] != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed != pinned (installed, pinned): {wrong}; reinstall with -c constraints.txt"
