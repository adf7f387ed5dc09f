"""Real-set loading by hub id, offline: a hand-made HF cache holding the tiny networks under the
real sd15 ids, and the clear error when weights are missing."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from generators.errors import MissingWeightsError
from generators.models.loader import load_models
from generators.models.tiny import IP_WEIGHT_NAME, ensure_tiny_set

BASE_REV = "0123456789abcdef0123456789abcdef01234567"
IP_REV = "89abcdef0123456789abcdef0123456789abcdef"
CN_REV = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="module")
def tiny_root():
    return ensure_tiny_set()  # the shared on-demand cache ($ANCHORDS_MODEL_CACHE or <repo>/.cache/models)


def _snapshot(hub, repo_id: str, rev: str):
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    return snap


def test_sd15_loads_by_hub_id_and_records_the_snapshot_revision(offline_home, tiny_root):
    hub = offline_home / "hub"
    base = _snapshot(hub, "stable-diffusion-v1-5/stable-diffusion-v1-5", BASE_REV)
    shutil.copytree(tiny_root / "base", base, dirs_exist_ok=True)
    # `make weights` fetches fp16 variants where a repo has them: store the UNet that way
    unet_dir = base / "unet"
    (unet_dir / "diffusion_pytorch_model.safetensors").rename(unet_dir / "diffusion_pytorch_model.fp16.safetensors")
    ip = _snapshot(hub, "h94/IP-Adapter", IP_REV)
    (ip / "models").mkdir()
    shutil.copy(tiny_root / "ip_adapter" / IP_WEIGHT_NAME, ip / "models" / "ip-adapter-plus_sd15.safetensors")
    shutil.copytree(tiny_root / "ip_adapter" / "image_encoder", ip / "models" / "image_encoder")
    cn = _snapshot(hub, "lllyasviel/control_v11p_sd15_normalbae", CN_REV)
    shutil.copytree(tiny_root / "controlnet", cn, dirs_exist_ok=True)

    models = load_models("sd15", {"ip_adapter", "controlnet"}, "cpu")

    assert models.set_name == "sd15"
    assert models.resolved["base"] == {"id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "revision": BASE_REV, "path": str(base)}
    assert models.resolved["ip_adapter"]["revision"] == IP_REV
    assert models.resolved["controlnet"]["revision"] == CN_REV
    assert models.ip_adapter_loaded and models.controlnet is not None
    assert models.finetune_layer == "up_blocks.3" and models.vae_input_size == 512
    assert models.dtype == torch.float32  # fp32 on CPU even from fp16-named files
    on_disk = load_file(unet_dir / "diffusion_pytorch_model.fp16.safetensors")
    key = "up_blocks.3.attentions.0.transformer_blocks.0.attn2.to_q.weight"
    assert torch.equal(models.unet.state_dict()[key], on_disk[key])


def test_missing_weights_name_the_model_and_the_fetch_command(offline_home):
    with pytest.raises(MissingWeightsError) as info:
        load_models("sd15", {"base"}, "cpu")
    msg = str(info.value)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in msg
    assert "revision main" in msg
    assert "make weights MODELS=sd15" in msg
    assert info.value.__cause__ is not None  # the hub library's error is kept
    assert info.value.exit_code == 2


def test_a_missing_component_names_its_own_repo(offline_home, tiny_root):
    base = _snapshot(offline_home / "hub", "stable-diffusion-v1-5/stable-diffusion-v1-5", BASE_REV)
    shutil.copytree(tiny_root / "base", base, dirs_exist_ok=True)
    with pytest.raises(MissingWeightsError, match="h94/IP-Adapter"):
        load_models("sd15", {"ip_adapter"}, "cpu")


def test_an_incomplete_snapshot_is_reported_as_missing_weights(offline_home, tiny_root):
    base = _snapshot(offline_home / "hub", "stable-diffusion-v1-5/stable-diffusion-v1-5", BASE_REV)
    shutil.copytree(tiny_root / "base", base, dirs_exist_ok=True)
    (base / "unet" / "diffusion_pytorch_model.safetensors").unlink()  # interrupted download
    with pytest.raises(MissingWeightsError, match="make weights MODELS=sd15") as info:
        load_models("sd15", {"base"}, "cpu")
    assert BASE_REV in str(info.value)
