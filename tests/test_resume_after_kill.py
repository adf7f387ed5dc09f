"""A generation killed with SIGKILL mid-run (a real process) and resumed is bit-identical to an
uninterrupted one, with one torch thread (what generators/train.py guarantees; with more threads
two straight runs already differ by rounding)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from generators.gaussians.ply import load_ply

REPO = Path(__file__).resolve().parents[1]
STEPS = 8
# the child: one tiny SDS run (the settings of tests/test_generation.py's SMALL), slowed after each
# checkpoint so the parent can kill it between two checkpoints
CHILD = r"""
import sys, time
import torch
torch.set_num_threads(1)
import generators.train as train
from generators.methods import resolve_run_config
from tests.test_generation import SMALL
from generators.config import deep_merge
save = train.save_checkpoint
def slow_save(*a, **k):
    save(*a, **k)
    time.sleep(float(sys.argv[2]))
train.save_checkpoint = slow_save
cfg = resolve_run_config("sds", prompt="a red apple", seed=0, models="tiny",
                         overrides=deep_merge(SMALL, {"steps": %d}))
print(train.run_generation(cfg, sys.argv[1], show_progress=False)["state"], flush=True)
""" % STEPS


def _child(out: Path, pause_s: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(pause_s)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _checkpoint_step(run_dir: Path) -> int:
    try:
        return int(torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["step"])
    except Exception:  # not written yet, or being replaced
        return -1


@pytest.mark.slow  # ~70 s on a 2-core CPU: three processes of a tiny run
def test_a_run_killed_mid_way_and_resumed_is_bit_identical_to_a_straight_run(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    first = _child(straight, 0.0)
    victim = _child(resumed, 1.0)
    deadline = time.monotonic() + 240
    while _checkpoint_step(resumed) < 4 and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = _checkpoint_step(resumed)
    assert 4 <= killed_at < STEPS and not (resumed / "gaussians.ply").exists()
    out, _ = first.communicate(timeout=240)
    assert first.returncode == 0, out
    again = _child(resumed, 0.0)
    out, _ = again.communicate(timeout=240)
    assert again.returncode == 0 and out.strip().endswith("done"), out
    a, b = load_ply(straight / "gaussians.ply"), load_ply(resumed / "gaussians.ply")
    for name in a.param_names:
        assert torch.equal(a.params[name], b.params[name]), name
    la, lb = pd.read_parquet(straight / "train_log.parquet"), pd.read_parquet(resumed / "train_log.parquet")
    pd.testing.assert_series_equal(la["loss"], lb["loss"])
    assert (straight / "views.png").read_bytes() == (resumed / "views.png").read_bytes()


def test_sigterm_stops_a_cli_run_resumable_with_a_message(tmp_path):
    """`kill PID` (SIGTERM) takes Ctrl-C's path (generators/signals.py): status "stopped", exit 130,
    the resume hint, and the same command then finishes the run from its checkpoint."""
    import json

    import yaml

    from tests.test_generation import SMALL

    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text(yaml.safe_dump({**SMALL, "checkpoint_every": 1}))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "generators", "run", "--method", "sds", "--prompt", "a red apple", "--models", "tiny",
           "--steps", "400", "--out", str(out), "--config", str(cfg_file), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while _checkpoint_step(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "resume" in text, text
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped" and "interrupted" in status["reason"], status
    stopped_at = _checkpoint_step(out)
    assert 2 <= stopped_at < 400 and not (out / "gaussians.ply").exists()
