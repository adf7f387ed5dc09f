"""End-to-end generation on the embedded tiny models (CPU): outputs, resume, every method, CLI errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from generators.gaussians.ply import load_ply
from generators.methods import method_names, resolve_run_config
from generators.models.loader import load_models
from generators.train import required_components, run_generation

REPO = Path(__file__).resolve().parents[1]

# small enough for 2 CPU cores: a ball of Gaussians, 2 views of 32 px (upsampled to the tiny VAE's
# 64 px input), densification moved into the first few steps so it is exercised
SMALL = {
    "checkpoint_every": 2,
    "camera": {"batch_size": 2, "width": 32, "height": 32},
    "init": {"kind": "ball", "ball_points": 300, "ball_radius": 0.6},
    "views": {"width": 32, "height": 32, "turntable_frames": 4, "grid_views": 4},
    "densify": {"start_after_step": 0, "every": 2, "stats_until_step": 6, "stop_after_step": 6,
                "grad_threshold": 1e-9},
}


def small_config(method, steps=6, **extra):
    from generators.config import deep_merge

    return resolve_run_config(method, prompt="a red apple", seed=0, models="tiny",
                              overrides=deep_merge(deep_merge(SMALL, {"steps": steps}), extra))


@pytest.fixture(scope="module")
def models_for():
    """Tiny models with exactly the components a config needs (as run_generation loads them), cached;
    finetuning methods change their adapter in place, so they get a fresh copy."""
    cache = {}

    def get(cfg):
        key = frozenset(required_components(cfg))
        if cfg.guidance.finetune.enabled:
            return load_models("tiny", key, "cpu")
        if key not in cache:
            cache[key] = load_models("tiny", key, "cpu")
        return cache[key]

    return get


def test_sds_run_writes_every_output(tmp_path, models_for):
    cfg = small_config("sds")
    status = run_generation(cfg, tmp_path, show_progress=False, models=models_for(cfg))
    assert status["state"] == "done" and status["step"] == 6
    for name in ("config.yaml", "gaussians.ply", "views.png", "turntable.gif", "train_log.parquet", "status.json"):
        assert (tmp_path / name).is_file(), name
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert list(log["step"]) == list(range(6))
    for col in ("t", "loss_sds", "loss_sparsity", "norm_grad", "num_gaussians", "step_time_s", "cfg_scale_diffusers"):
        assert log[col].notna().all(), col
    assert (log["cfg_scale_diffusers"] == 101.0).all()  # threestudio 100 = diffusers 101
    assert log["densify_after"].notna().any()  # densification ran inside the run
    g = load_ply(tmp_path / "gaussians.ply")
    assert len(g) == status["num_gaussians"]
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "done"


@pytest.mark.parametrize("method", ["anchords-ipa-finetune", "vsd"])
def test_resume_is_bit_identical_to_a_straight_run(tmp_path, models_for, method):
    # Gaussians, Adam, densify state and the trainable guidance part (the finetuned adapter; VSD's
    # LoRA, camera embedding and their AdamW state) all resume
    cfg = small_config(method)
    comps = required_components(cfg)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_generation(cfg, straight, show_progress=False, models=load_models("tiny", comps, "cpu"))
    stopped = run_generation(cfg, resumed, show_progress=False, models=load_models("tiny", comps, "cpu"),
                             stop_after=3)
    assert stopped["state"] == "stopped" and not (resumed / "gaussians.ply").exists()
    # a fresh process would reload the models: so do we (the trained part must come from the checkpoint)
    run_generation(cfg, resumed, show_progress=False, models=load_models("tiny", comps, "cpu"))
    a, b = load_ply(straight / "gaussians.ply"), load_ply(resumed / "gaussians.ply")
    for name in a.param_names:
        assert torch.equal(a.params[name], b.params[name]), name
    la, lb = pd.read_parquet(straight / "train_log.parquet"), pd.read_parquet(resumed / "train_log.parquet")
    pd.testing.assert_series_equal(la["loss"], lb["loss"])
    assert list(lb["step"]) == list(range(6))


def test_a_changed_setting_does_not_resume_another_runs_checkpoint(tmp_path, models_for):
    first = small_config("sds")
    run_generation(first, tmp_path, show_progress=False, models=models_for(first), stop_after=2)
    other = small_config("sds", guidance={"guidance_scale": 50.0})
    status = run_generation(other, tmp_path, show_progress=False, models=models_for(other), stop_after=2)
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert status["state"] == "stopped" and list(log["step"]) == [0, 1]  # started over, from step 0


def test_nan_stops_the_run_with_a_reason(tmp_path, models_for):
    cfg = small_config("sds")
    cfg.loss.lambda_sparsity = float("nan")  # past the config's checks, which refuse a nan setting
    status = run_generation(cfg, tmp_path, show_progress=False, models=models_for(cfg))
    assert status["state"] == "failed" and "non-finite loss at step 0" in status["reason"]
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


@pytest.mark.parametrize("method", [m for m in method_names() if m != "sds"])
def test_every_method_runs_on_the_tiny_set(tmp_path, models_for, method):
    extra = {"guidance": {"source": {"bridge": {"stage_two_start_step": 2}}}} if method == "sds-bridge" else {}
    cfg = small_config(method, steps=4, **extra)
    status = run_generation(cfg, tmp_path, show_progress=False, models=models_for(cfg))
    assert status["state"] == "done", status.get("reason")
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert torch.isfinite(torch.tensor(log["loss"].to_numpy())).all()
    if method.startswith("anchords"):
        assert log["l_rec_latent"].notna().all()
    if "filter" in method:
        assert log["l_rec_filter"].notna().all() and log["keep_rate"].between(0, 1).all()
    if "finetune" in method:
        assert log["loss_finetune"].notna().all()
    if method == "sds-bridge":
        assert (log.loc[log.step >= 2, "cfg_scale_diffusers"] == 0).all()  # stage two: plain difference


def _cli(*args, cwd=REPO):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "generators", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_cli_user_errors_exit_2_with_a_message(tmp_path):
    r = _cli("run", "--method", "no-such-method", "--prompt", "x", "--out", str(tmp_path / "a"), "--models", "tiny")
    assert r.returncode == 2 and "unknown method 'no-such-method'" in r.stderr and "anchords-ipa" in r.stderr
    r = _cli("run", "--method", "sds", "--prompt", "x", "--out", str(tmp_path / "b"), "--models", "tiny",
             "--set", "guidance.guidance_scael=3")
    assert r.returncode == 2 and "guidance_scael" in r.stderr
    r = _cli("run", "--method", "sds", "--prompt", "x", "--out", str(tmp_path / "c"), "--models", "no-such-set")
    assert r.returncode == 2 and "no-such-set" in r.stderr
    r = _cli("run", "--method", "sds", "--prompt", "  ", "--out", str(tmp_path / "d"), "--models", "tiny")
    assert r.returncode == 2 and "empty" in r.stderr
    assert not any((tmp_path / x / "status.json").exists() for x in "abcd")


def test_cli_methods_lists_every_preset():
    r = _cli("methods")
    assert r.returncode == 0
    for name in method_names():
        assert name in r.stdout


def test_missing_weights_exit_2_and_leave_no_run_behind(tmp_path):
    env_home = tmp_path / "hf"
    env_home.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "HF_HOME": str(env_home)}
    env.pop("HF_HUB_CACHE", None)
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "generators", "run", "--method", "sds", "--prompt", "a red apple",
                        "--models", "sd15", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 2
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in r.stderr and "make weights MODELS=sd15" in r.stderr
    assert not out.exists()
