"""ToyWorld prior: the diffusers/transformers networks, the IP-Adapter round trip, training and resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from generators.toyworld.config import PriorNetConfig, PriorTrainConfig, SceneSampling, WorldConfig
from generators.toyworld.data import render_chunk
from generators.toyworld.prior import (BOS_ID, EOS_ID, ToyPrior, build_image_processor, build_tokenizer, build_unet,
                                       count_parameters, from_latents, ip_adapter_state_dict, normalise_for_clip,
                                       to_latents, unet_base_state_dict)
from generators.toyworld.train_prior import CHECKPOINT, PriorTrainer, lr_factor, read_log

NET = PriorNetConfig()


@pytest.fixture(scope="module")
def model():
    return ToyPrior(NET, seed=0).eval()


@pytest.fixture(scope="module")
def pool():
    return render_chunk(48, seed=4, world=WorldConfig(), scenes=SceneSampling(p_one=0.3))


def inputs(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tok = build_tokenizer()
    ids = tok(["a red cube", "a blue sphere and a yellow cube", ""][:b], padding="max_length", max_length=77,
              return_tensors="pt").input_ids
    z = torch.randn(b, 12, 16, 16, generator=g)
    t = torch.tensor([10, 500, 990][:b])
    pixels = normalise_for_clip(torch.rand(b, 3, 32, 32, generator=g))
    return z, t, ids, pixels


def test_byte_level_tokenizer_spells_captions():
    tok = build_tokenizer()
    assert len(tok) == 514 and tok.model_max_length == 77
    ids = tok("a red cube").input_ids
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert len(ids) == 2 + len("a red cube") - 2  # one token per character, spaces fold into </w>
    assert tok.decode(ids, skip_special_tokens=True).strip() == "a red cube"
    assert tok("a red cone").input_ids != tok("a red cube").input_ids


def test_networks_have_the_spike_size_and_the_real_ip_modules(model):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import MultiIPAdapterImageProjection

    base = sum(v.numel() for v in unet_base_state_dict(model.unet).values())
    assert 2.0e6 < base < 2.4e6  # the spike's 2.15M working configuration
    assert isinstance(model.unet.encoder_hid_proj, MultiIPAdapterImageProjection)
    cross = [p for n, p in model.unet.attn_processors.items() if n.endswith("attn2.processor")
             and not n.startswith("encoder_hid_proj")]
    # down 8x8 + 4x4, mid, up 4x4 x2 + 8x8 x2 (up blocks hold layers_per_block + 1 layers)
    assert len(cross) == 7 and all(isinstance(p, IPAdapterAttnProcessor2_0) for p in cross)
    assert count_parameters(model.text_encoder) < 3e5 and count_parameters(model.image_encoder) < 2e5


def test_codec_matches_pixel_unshuffle_of_2x_minus_1():
    x = torch.rand(2, 3, 32, 32)
    z = to_latents(x, 2)
    assert z.shape == (2, 12, 16, 16)
    # channel 4c + 2i + j holds colour c at sub-pixel offset (i, j)
    assert torch.equal(z[:, 0], 2 * x[:, 0, 0::2, 0::2] - 1)
    assert torch.equal(z[:, 1], 2 * x[:, 0, 0::2, 1::2] - 1)
    assert torch.equal(z[:, 4 + 2], 2 * x[:, 1, 1::2, 0::2] - 1)
    assert torch.allclose(from_latents(z, 2), x, atol=1e-6)
    try:
        from generators.models.codec import PixelUnshuffleCodec
    except ImportError:
        return  # written by another engineer; compared once it exists
    codec = PixelUnshuffleCodec(2)
    assert torch.allclose(codec.encode(x), z, atol=1e-6)


def test_clip_normalisation_matches_the_saved_image_processor():
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    proc = build_image_processor()
    ours = normalise_for_clip(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0)
    theirs = proc(images=[rgb], return_tensors="pt").pixel_values
    assert theirs.shape == (1, 3, 32, 32)
    assert torch.allclose(ours, theirs, atol=2e-2)  # bicubic "resize" to the same size is near-identity
    assert (ours - theirs).abs().mean() < 2e-3


def test_ip_adapter_round_trips_through_the_diffusers_loader(model):
    z, t, ids, pixels = inputs()
    with torch.no_grad():
        ref = model(z, t, ids, pixels)
        other_image = model(z, t, ids, pixels.flip(0))
    assert not torch.allclose(ref, other_image, atol=1e-4)  # the image condition matters
    fresh = build_unet(NET)
    fresh.load_state_dict(unet_base_state_dict(model.unet))
    fresh._load_ip_adapter_weights([ip_adapter_state_dict(model.unet)], low_cpu_mem_usage=False)
    with torch.no_grad():
        text = model.encode_text(ids)
        image = model.encode_image(pixels)
        out = fresh(z, t, encoder_hidden_states=text, added_cond_kwargs={"image_embeds": [image[:, None]]}).sample
    assert torch.allclose(out, ref, atol=1e-5)


def test_zeroed_image_tokens_equal_ip_scale_zero(model):
    z, t, ids, pixels = inputs()
    with torch.no_grad():
        masked = model(z, t, ids, pixels, token_keep=torch.tensor([0.0, 1.0, 0.0]))
        full = model(z, t, ids, pixels)
        from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

        procs = [p for p in model.unet.attn_processors.values() if isinstance(p, IPAdapterAttnProcessor2_0)]
        for p in procs:
            p.scale = [0.0]
        try:
            no_ip = model(z, t, ids, pixels)
        finally:
            for p in procs:
                p.scale = [1.0]
    assert torch.allclose(masked[[0, 2]], no_ip[[0, 2]], atol=1e-5)
    assert torch.allclose(masked[1], full[1], atol=1e-6)
    assert not torch.allclose(full[0], no_ip[0], atol=1e-4)


def test_lr_schedule_warms_up_then_decays():
    cfg = PriorTrainConfig(lr_warmup_steps=10, total_steps=110, lr_final_frac=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)
    assert lr_factor(110, cfg) == pytest.approx(0.1) and lr_factor(500, cfg) == pytest.approx(0.1)


def small_recipe() -> PriorTrainConfig:
    return dataclasses.replace(PriorTrainConfig(), batch_size=6, log_every=1)


def test_three_recipe_steps_give_a_reproducible_first_loss(tmp_path, pool):
    runs = []
    for name in ("a", "b"):
        tr = PriorTrainer(tmp_path / name, pool, NET, small_recipe(), log=lambda m: None)
        runs.append(tr.run(3))
    assert runs[0] == runs[1]
    # epsilon MSE of an untrained net is about the noise variance
    assert 0.5 < runs[0][0] < 2.0
    rows = read_log(tmp_path / "a" / "train_log.csv")
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[0]["loss"] == pytest.approx(runs[0][0])
    batch = PriorTrainer(tmp_path / "c", pool, NET, small_recipe(), log=lambda m: None).batch()
    # condition dropout: dropped text rows hold the empty caption's tokens
    assert batch["ids"].shape == (6, 77) and batch["noisy"].shape == (6, 12, 16, 16)


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, pool):
    whole = PriorTrainer(tmp_path / "whole", pool, NET, small_recipe(), log=lambda m: None)
    losses_whole = whole.run(4)
    part = PriorTrainer(tmp_path / "part", pool, NET, small_recipe(), log=lambda m: None)
    first = part.run(2)
    assert (tmp_path / "part" / CHECKPOINT).exists()
    resumed = PriorTrainer(tmp_path / "part", pool, NET, small_recipe(), log=lambda m: None)
    resumed.load()
    assert resumed.step == 2
    second = resumed.run(4)
    assert first + second == losses_whole
    for (n, p), (_, q) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(p, q), n
    for n in whole.ema:
        assert torch.equal(whole.ema[n], resumed.ema[n]), n
    assert [r["step"] for r in read_log(tmp_path / "part" / "train_log.csv")] == [1, 2, 3, 4]


def test_training_fits_a_single_batch(tmp_path, pool):
    """A few dozen steps on a tiny pool lower the loss: gradients reach the networks."""
    cfg = dataclasses.replace(PriorTrainConfig(), batch_size=4, lr=2e-3, lr_warmup_steps=1, log_every=100)
    tiny = {k: v[:2] for k, v in pool.items()}
    tr = PriorTrainer(tmp_path / "fit", tiny, NET, cfg, log=lambda m: None)
    losses = tr.run(30)
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:4]) / 4
