"""`make gpu-check` stops in seconds, saying why, where there is no GPU; its stages keep one deadline."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "tests" / "perf" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without a GPU")
def test_gpu_check_fails_fast_and_clearly_without_a_gpu():
    t0 = time.monotonic()
    proc = subprocess.run(["make", "-s", "-o", ".venv/.installed", "gpu-check"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "make gpu-check cannot run here" in proc.stderr and "no CUDA GPU is visible" in proc.stderr
    assert time.monotonic() - t0 < 120  # imports only: no build, no benchmark
    assert not (REPO / "results" / "perf" / "gpu_check_cuda.json").exists() or \
        (REPO / "results" / "perf" / "gpu_check_cuda.json").stat().st_mtime < t0 - 1  # nothing written


def test_stages_share_one_deadline_and_record_a_timeout():
    stages = _gpu_check().Stages(budget_s=3.0, env=dict(os.environ))
    assert stages.run("fast", [sys.executable, "-c", "print('hello')"], expected_s=1)
    t0 = time.monotonic()
    assert not stages.run("slow", [sys.executable, "-c", "import time; time.sleep(30)"], expected_s=1)
    assert time.monotonic() - t0 < 10  # cut at the budget, not after 30 s
    assert [r["rc"] for r in stages.records] == [0, "timeout"]
    assert "hello" in stages.records[0]["output_tail"]
    assert stages.left() < 0 and not stages.parallel("after", {"x": [sys.executable, "-c", "pass"]}, expected_s=1)
    assert stages.records[-1]["rc"] == "skipped"  # nothing starts once the budget is spent
