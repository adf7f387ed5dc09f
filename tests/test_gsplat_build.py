"""`make gsplat`'s checks: each missing piece is named in seconds, before any compiling."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from generators.render import gsplat_build
from generators.render.gsplat_build import Toolchain, problems

REPO = Path(__file__).resolve().parents[1]
READY = Toolchain(torch_version="2.14.1+cu130", torch_cuda="13.0", nvcc="/usr/local/cuda/bin/nvcc", nvcc_cuda="13.0",
                  arch_list=None, gpu_capabilities=["9.0"])


def test_a_complete_toolchain_has_no_problems():
    assert problems(READY) == []
    assert problems(replace(READY, gpu_capabilities=[], arch_list="9.0")) == []  # cross-compiling on a login node
    assert problems(replace(READY, nvcc_cuda="13.2")) == []  # minor versions may differ (torch only warns)


@pytest.mark.parametrize("change, words", [
    (dict(torch_cuda=None), ["CPU-only build", "CUDA build of torch"]),
    (dict(nvcc=None, nvcc_cuda=None), ["no nvcc", "CUDA toolkit 13.0", "CUDA_HOME"]),
    (dict(nvcc_cuda="12.4"), ["12.4", "does not match torch's CUDA 13.0"]),
    (dict(nvcc_cuda=None), ["could not read the CUDA version"]),
    (dict(gpu_capabilities=[], arch_list=None), ["TORCH_CUDA_ARCH_LIST", "9.0", "H100"]),
])
def test_each_missing_piece_is_named_with_what_to_do(change, words):
    found = problems(replace(READY, **change))
    assert len(found) == 1, found
    for word in words:
        assert word in found[0]


def test_all_problems_are_reported_at_once():
    found = problems(Toolchain("2.14.1", None, None, None, None, []))
    assert len(found) == 3  # CPU torch, no nvcc, no arch list


def test_nvcc_is_looked_for_in_an_explicit_cuda_home_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    assert gsplat_build.find_nvcc() is None  # a CUDA_HOME without nvcc is not silently replaced
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.8, V12.8.93'\n")
    (tmp_path / "bin" / "nvcc").chmod(0o755)
    assert gsplat_build.find_nvcc() == str(tmp_path / "bin" / "nvcc")
    assert gsplat_build.nvcc_cuda_version(gsplat_build.find_nvcc()) == "12.8"


def test_the_backend_and_the_build_share_one_extensions_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    assert gsplat_build.extensions_dir() == REPO / ".cache" / "torch_extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "shared"))
    assert gsplat_build.use_shared_extensions_dir() == tmp_path / "shared"
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "shared")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_make_gsplat_fails_fast_and_clearly_on_a_machine_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TORCH_CUDA_ARCH_LIST"}
    t0 = time.monotonic()
    # -o: take the installed venv as up to date (the target depends on it; nothing is reinstalled)
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "gsplat"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "cannot build gsplat's CUDA extension" in proc.stderr
    assert "TORCH_CUDA_ARCH_LIST" in proc.stderr or "CPU-only" in proc.stderr or "no nvcc" in proc.stderr
    assert time.monotonic() - t0 < 120  # seconds (imports), never a compile
    assert not list((REPO / ".cache" / "torch_extensions").glob("*/gsplat_cuda/*.o"))  # nothing compiled
