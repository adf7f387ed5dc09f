"""The embedded tiny set: HF layout on disk, loaded through the real loader, IP-Adapter in the UNet."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file

from generators.models.loader import load_models
from generators.models.tiny import IP_WEIGHT_NAME, build_tiny_set, ensure_tiny_set


@pytest.fixture(scope="module")
def tiny_root():
    return ensure_tiny_set()  # the shared on-demand cache ($ANCHORDS_MODEL_CACHE or <repo>/.cache/models)


@pytest.fixture(scope="module")
def models(tiny_root):
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        yield load_models("tiny", {"base", "ip_adapter", "controlnet"}, "cpu")
    finally:
        mp.undo()


def test_tiny_set_is_written_in_the_hugging_face_layout(tiny_root):
    expected = [
        "base/model_index.json",
        "base/unet/config.json",
        "base/unet/diffusion_pytorch_model.safetensors",
        "base/vae/diffusion_pytorch_model.safetensors",
        "base/text_encoder/model.safetensors",
        "base/tokenizer/tokenizer_config.json",
        "base/scheduler/scheduler_config.json",
        f"ip_adapter/{IP_WEIGHT_NAME}",
        "ip_adapter/image_encoder/config.json",
        "ip_adapter/image_encoder/model.safetensors",
        "controlnet/config.json",
        "controlnet/diffusion_pytorch_model.safetensors",
        "shap_e/model_index.json",
        "shap_e/prior/diffusion_pytorch_model.safetensors",
        "shap_e/shap_e_renderer/diffusion_pytorch_model.safetensors",
    ]
    missing = [p for p in expected if not (tiny_root / p).is_file()]
    assert not missing


def test_loader_reads_the_unet_from_disk_with_sd15_structure(models, tiny_root):
    from diffusers import UNet2DConditionModel

    unet = models.unet
    assert isinstance(unet, UNet2DConditionModel)
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert hasattr(unet.up_blocks[3].attentions[0].transformer_blocks[0], "attn2")
    on_disk = load_file(tiny_root / "base/unet/diffusion_pytorch_model.safetensors")
    state = unet.state_dict()
    assert set(on_disk) <= set(state)
    for key, value in on_disk.items():
        assert torch.equal(state[key], value), key
    assert models.resolved["base"]["path"] == str(tiny_root / "base")
    assert models.resolved["base"]["revision"] == "local"


def test_every_network_is_frozen_in_eval_mode(models):
    for name in ("text_encoder", "unet", "vae", "image_encoder", "controlnet"):
        module = getattr(models, name)
        assert not module.training, name
        assert not any(p.requires_grad for p in module.parameters()), name


def test_scheduler_is_ddim_as_anchords_uses_it(models):
    from diffusers import DDIMScheduler

    s = models.scheduler
    assert isinstance(s, DDIMScheduler)
    assert (s.config.steps_offset, s.config.clip_sample, s.config.set_alpha_to_one) == (1, False, False)
    # SD 1.5 schedule: scaled-linear betas 0.00085 -> 0.012 over 1000 steps
    assert s.betas[0].item() == pytest.approx(0.00085, rel=1e-4)
    assert s.betas[-1].item() == pytest.approx(0.012, rel=1e-4)


def test_ip_adapter_plus_is_loaded_into_the_unet(models, tiny_root):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    assert models.ip_adapter_loaded
    procs = models.unet.attn_processors
    cross = {k: p for k, p in procs.items() if k.endswith("attn2.processor")}
    assert cross and all(isinstance(p, IPAdapterAttnProcessor2_0) for p in cross.values())
    assert models.unet.encoder_hid_proj is not None
    # the K/V projections in the UNet are the file's tensors (numbered like the original ModuleList)
    file = load_file(tiny_root / "ip_adapter" / IP_WEIGHT_NAME)
    for index, (name, proc) in enumerate(procs.items()):
        if name.endswith("attn2.processor"):
            assert torch.equal(proc.to_k_ip[0].weight, file[f"ip_adapter.{index}.to_k_ip.weight"])
            assert torch.equal(proc.to_v_ip[0].weight, file[f"ip_adapter.{index}.to_v_ip.weight"])


def test_image_embeds_change_the_unet_output_unless_ip_scale_is_zero(models):
    g = torch.Generator().manual_seed(0)
    B = 2
    z = torch.randn(B, 4, 8, 8, generator=g)
    t = torch.tensor([500, 300])
    text = models.encode_text(["a red cube", "a blue sphere"])
    size = models.image_encoder.config.image_size
    images = torch.rand(B, 3, size, size, generator=g)
    with torch.no_grad():
        feats = models.image_encoder(images, output_hidden_states=True).hidden_states[-2]  # [B, seq, E]
        black = models.image_encoder(torch.zeros_like(images), output_hidden_states=True).hidden_states[-2]

        def eps(embeds):
            return models.unet(z, t, encoder_hidden_states=text, added_cond_kwargs={"image_embeds": [embeds[:, None]]}).sample

        try:
            with_image, with_black = eps(feats), eps(black)
            assert (with_image - with_black).abs().max() > 1e-3
            models.set_ip_adapter_scale(0.0)
            assert torch.allclose(eps(feats), eps(black), atol=1e-6)
        finally:
            models.set_ip_adapter_scale(1.0)


def test_controlnet_residuals_match_the_unet_and_depend_on_the_control_image(models):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 4, 8, 8, generator=g)
    t = torch.tensor([400])
    text = models.encode_text(["a chair"])
    control = torch.rand(1, 3, 64, 64, generator=g)
    with torch.no_grad():
        down, mid = models.controlnet(z, t, encoder_hidden_states=text, controlnet_cond=control, return_dict=False)
        down0, _ = models.controlnet(z, t, encoder_hidden_states=text, controlnet_cond=control.flip(-1), return_dict=False)
    assert down[0].shape[-2:] == (8, 8) and mid.shape[-2:] == (1, 1)
    assert (down[0] - down0[0]).abs().max() > 1e-4


def test_encode_text_shape_and_cache(models, monkeypatch):
    emb = models.encode_text(["a", "bb", "a"])
    assert emb.shape == (3, 77, models.text_encoder.config.hidden_size)
    assert torch.equal(emb[0], emb[2]) and not torch.equal(emb[0], emb[1])
    ids = models.tokenizer(["bb"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        direct = models.text_encoder(ids)[0]
    assert torch.allclose(emb[1], direct[0])
    calls = []
    forward = models.text_encoder.forward
    monkeypatch.setattr(models.text_encoder, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    again = models.encode_text(["bb", "a"])
    assert calls == []  # served from the cache
    assert torch.equal(again[0], emb[1])
    models.encode_text(["a new prompt"])
    assert calls == [1]


def _digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_builds_with_the_same_seed_are_byte_identical(tmp_path, tiny_root):
    a = _digests(build_tiny_set(tmp_path / "a", seed=0))
    assert any(k.endswith(".safetensors") for k in a)
    assert a == _digests(tiny_root)  # the cached set (built by ensure_tiny_set) is the same bytes
    b = _digests(build_tiny_set(tmp_path / "b", seed=1))
    unet = "base/unet/diffusion_pytorch_model.safetensors"
    assert a[unet] != b[unet]


def test_building_does_not_disturb_the_global_random_stream(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_set(tmp_path / "c", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_concurrent_workers_build_once_and_stale_sets_are_rebuilt(tmp_path, monkeypatch):
    import json
    import threading

    from generators.models import tiny

    calls = []
    real_build = tiny.build_tiny_set
    monkeypatch.setattr(tiny, "build_tiny_set", lambda out, seed=0: calls.append(out) or real_build(out, seed))
    results = []
    workers = [threading.Thread(target=lambda: results.append(tiny.ensure_tiny_set(tmp_path))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(calls) == 1 and results == [tmp_path / "tiny"] * 2
    assert calls[0] != tmp_path / "tiny"  # built elsewhere, then renamed into place
    # only the finished set and the lock remain: no half-built folders
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tiny.lock", "tiny"]
    (tmp_path / "tiny" / tiny.STAMP_FILE).write_text(json.dumps({"version": -1, "seed": 0}))
    assert tiny.ensure_tiny_set(tmp_path) == tmp_path / "tiny"
    assert len(calls) == 2
    assert json.loads((tmp_path / "tiny" / tiny.STAMP_FILE).read_text())["version"] == tiny.TINY_SET_VERSION
