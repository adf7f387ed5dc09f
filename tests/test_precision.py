"""Precision as a run setting (generators/precision.py): how "auto" resolves, the whole loop of every
method under bf16 autocast on CPU against fp32, and fp16's loss scaling keeping the VAE-encoder and
L_rec gradients out of fp16's underflow."""

import pytest
import torch

from generators.config import ConfigError, config_from_dict
from generators.errors import UserError
from generators.methods import method_names
from generators.models.loader import load_models
from generators.precision import Precision, resolve_precision
from generators.precision_check import SMALL_GRADIENTS, tiny_agreement, tiny_config
from generators.train import required_components, run_generation


def test_auto_is_bf16_on_ampere_fp16_on_older_gpus_and_fp32_on_cpu(monkeypatch):
    assert resolve_precision("auto", "cpu") == Precision("fp32", "cpu")
    for major, expected in ((9, "bf16"), (8, "bf16"), (7, "fp16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, m=major: (m, 0))
        assert resolve_precision("auto", "cuda").name == expected
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(UserError, match="precision=fp16"):
        resolve_precision("bf16", "cuda")  # a V100 has no native bf16: refused, not emulated
    assert resolve_precision("fp16", "cpu").grad_scaler().is_enabled()
    assert not resolve_precision("bf16", "cpu").grad_scaler().is_enabled()


def test_precision_is_a_strict_run_setting():
    assert config_from_dict({"precision": "bf16"}).precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        config_from_dict({"precision": "fp8"})


@pytest.mark.parametrize("method", method_names())
def test_every_method_runs_under_bf16_autocast_with_the_fp32_gradient(tmp_path, method):
    cfg = tiny_config(method, "bf16")
    models = load_models("tiny", required_components(cfg), "cpu", dtype=torch.bfloat16)
    status = run_generation(cfg, tmp_path, show_progress=False, stop_after=2, models=models)
    assert status["precision"] == "bf16" and status["step"] == 2, status.get("reason")

    for step, agreement in enumerate(tiny_agreement(method, "bf16")):
        assert agreement["latent_cosine"] >= 0.99, (step, agreement)
        assert agreement["zeroed"] == [], (step, agreement)  # bf16 zeroes no gradient fp32 has
        assert agreement["gaussians_tensors"] >= 4
        if cfg.guidance.finetune.enabled or cfg.guidance.source.kind == "lora":
            assert agreement["trainer_tensors"] > 0 and agreement["trainer_cosine"] >= 0.99, (step, agreement)


def test_fp16_loss_scaling_keeps_encoder_and_l_rec_gradients_from_underflowing():
    for step, agreement in enumerate(tiny_agreement("anchords-ipa-finetune", "fp16", **SMALL_GRADIENTS)):
        assert agreement["zeroed"] == [] and not agreement["skipped"], (step, agreement)
        assert agreement["gaussians_cosine"] >= 0.99 and agreement["trainer_cosine"] >= 0.99, (step, agreement)


def test_without_loss_scaling_fp16_gradients_underflow():
    """The control of the test above: the same run with the scaler switched off loses them all."""
    agreement = tiny_agreement("anchords-ipa-finetune", "fp16", steps=1, loss_scaling=False, **SMALL_GRADIENTS)[0]
    assert "gaussians.means" in agreement["zeroed"]  # through the VAE encoder
    assert any(name.startswith("trainer.") for name in agreement["zeroed"])  # L_rec into the adapter


def test_an_fp16_run_with_a_trainable_part_steps_and_checkpoints_its_loss_scale(tmp_path):
    cfg = tiny_config("anchords-ipa-finetune", "fp16")
    models = load_models("tiny", required_components(cfg), "cpu", dtype=torch.float16)
    status = run_generation(cfg, tmp_path, show_progress=False, stop_after=2, models=models)
    assert status["precision"] == "fp16" and status["step"] == 2, status.get("reason")
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["scaler"]["scale"] > 0  # the dynamic scale resumes with the run
    assert all(v.dtype == torch.float32 for v in ckpt["trainer"]["params"].values())  # fp32 masters

