"""ToyWorld export: a trained run becomes a Hugging Face model set the project's loader reads back."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from generators.toyworld.config import PriorNetConfig, PriorTrainConfig, SceneSampling, WorldConfig
from generators.toyworld.data import render_chunk
from generators.toyworld.export import IP_WEIGHT_NAME, export, load_run
from generators.toyworld.prior import build_image_processor, build_scheduler, normalise_for_clip, to_latents
from generators.toyworld.train_prior import PriorTrainer, lr_factor


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_export")
    pool = render_chunk(16, seed=3, world=WorldConfig(), scenes=SceneSampling(p_one=0.5))
    cfg = dataclasses.replace(PriorTrainConfig(), batch_size=4, log_every=1)
    PriorTrainer(root / "run", pool, PriorNetConfig(), cfg, log=lambda m: None).run(2)
    out = export(root / "run", root / "weights")
    (root / "toy_test.yaml").write_text(
        "name: toy-test\nbase: {path: weights}\n"
        "ip_adapter: {path: weights, subfolder: ip_adapter, weight_name: " + IP_WEIGHT_NAME
        + ", image_encoder: image_encoder}\ncodec: {kind: pixel-unshuffle, factor: 2}\nvae_input_size: 32\n"
    )
    return root, out


def test_export_writes_the_hugging_face_layout(exported):
    _, out = exported
    for sub in ("unet/config.json", "text_encoder/config.json", "tokenizer/tokenizer_config.json",
                "scheduler/scheduler_config.json", "image_encoder/config.json",
                "image_processor/preprocessor_config.json", f"ip_adapter/{IP_WEIGHT_NAME}",
                "training/train_log.csv", "training/export.json"):
        assert (out / sub).is_file(), sub
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 15e6  # small enough to commit
    keys = load_file(str(out / "ip_adapter" / IP_WEIGHT_NAME)).keys()
    assert "image_proj.latents" in keys and "image_proj.layers.3.0.to_kv.weight" in keys
    assert "ip_adapter.1.to_k_ip.weight" in keys and not any(k.startswith("image_proj.proj.") for k in keys)


def test_loader_and_diffusers_ip_loading_reproduce_the_trained_prior(exported):
    from generators.models.loader import load_models
    from generators.models.codec import PixelUnshuffleCodec

    root, out = exported
    model, _ = load_run(root / "run")  # EMA weights, as exported
    models = load_models(root / "toy_test.yaml", {"base", "ip_adapter"}, "cpu")  # the project's one loader
    assert isinstance(models.codec, PixelUnshuffleCodec) and models.ip_adapter_loaded
    assert torch.allclose(models.scheduler.alphas_cumprod, build_scheduler(model.cfg).alphas_cumprod)
    unet, encoder = models.unet, models.image_encoder
    assert list(models.image_processor.image_mean) == list(build_image_processor().image_mean)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g)
    z = models.codec.encode(x)
    assert torch.equal(z, to_latents(x, 2))
    pixels = normalise_for_clip(torch.rand(2, 3, 32, 32, generator=g))
    t = torch.tensor([100, 700])
    prompts = ["a green torus", "a red cone and a blue cube"]
    with torch.no_grad():
        text = models.encode_text(prompts)
        image = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        got = unet(z, t, encoder_hidden_states=text, added_cond_kwargs={"image_embeds": [image[:, None]]}).sample
        ids = models.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
        ref = model(z, t, ids, pixels)
    assert torch.allclose(got, ref, atol=1e-5)


def test_an_export_loads_back_as_the_trained_composite_and_training_continues_from_it(exported, tmp_path):
    """The checkpoint of the committed prior is lost; its export must be enough to continue training."""
    from generators.toyworld.export import load_export

    root, out = exported
    ema_model, ck = load_run(root / "run")
    back, info = load_export(out, PriorNetConfig())
    assert info["step"] == ck["step"] == 2
    for (n, p), (_, q) in zip(ema_model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(p, q), n
    cfg = dataclasses.replace(PriorTrainConfig(), batch_size=4, log_every=1, lr_warmup_steps=4)
    pool = render_chunk(8, seed=5, world=WorldConfig(), scenes=SceneSampling(p_one=0.5))
    tr = PriorTrainer(tmp_path / "warm", pool, PriorNetConfig(), cfg, log=lambda m: None)
    tr.warm_start(back, info["step"])
    assert tr.step == 2 and tr.lr_now() == pytest.approx(cfg.lr * 0.25 * lr_factor(2, cfg))  # warms up again
    tr.run(3)
    resumed = PriorTrainer(tmp_path / "warm", pool, PriorNetConfig(), cfg, log=lambda m: None)
    resumed.load()  # the re-warm survives a resume
    assert resumed.step == 3 and resumed.rewarm_from == 2
    assert resumed.lr_now() == pytest.approx(cfg.lr * 0.5 * lr_factor(3, cfg))


def test_an_export_of_another_network_config_is_refused(exported):
    from generators.errors import UserError
    from generators.toyworld.export import load_export

    _, out = exported
    with pytest.raises(UserError, match="network config differs"):
        load_export(out, dataclasses.replace(PriorNetConfig(), text_layers=2))
    with pytest.raises(UserError, match="not a ToyWorld export"):
        load_export(out / "unet", PriorNetConfig())
