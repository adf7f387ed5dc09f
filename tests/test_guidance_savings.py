"""Work the guidance no longer does changes nothing: each saving against the computation it replaced,
on the tiny set (generators/flops.py counts what each one saves at full size)."""

import pytest
import torch

from generators.cameras import make_cameras
from generators.guidance.sources import StepContext
from generators.methods import resolve_run_config
from generators.models.loader import load_models
from generators.train import build_guidance, required_components
from test_anchords import B, fixed_render  # tests/ is on the path under pytest


def tiny_guidance(method):
    cfg = resolve_run_config(method, prompt="a red apple", models="tiny")
    models = load_models("tiny", required_components(cfg) - {"shap_e"}, "cpu")
    return build_guidance(cfg, models)


@pytest.mark.parametrize("method", ["anchords-ipa-finetune", "anchords-cn-finetune"])
def test_finetune_target_branch_apart_changes_nothing(method):
    """With autograd on, the target branch runs as its own call under no_grad: eps_target, eps_source
    and the finetuned adapter's gradient equal those of the one batched 2B call it replaced."""
    guidance = tiny_guidance(method)
    cams = make_cameras(torch.full((B,), 15.0), torch.linspace(0, 240, B), torch.full((B,), 3.0),
                        torch.full((B,), 50.0), 64, 64)
    render = fixed_render()
    ctx = StepContext(0, cams, render.rgb.permute(0, 3, 1, 2), render)
    target, source = guidance.source.branches(ctx)
    g = torch.Generator().manual_seed(1)
    z_t, t = torch.randn(B, 4, 8, 8, generator=g), torch.tensor([200, 500, 800])
    params = guidance.finetune.params

    def grads(eps_src):
        for p in params.values():
            p.grad = None
        eps_src.square().mean().backward()
        return {k: p.grad.clone() for k, p in params.items()}

    with torch.enable_grad():
        eps_tgt, eps_src = guidance.denoiser.predict(z_t, t, target, source)
        assert not eps_tgt.requires_grad  # no graph (and no backward) through the target views
        split = grads(eps_src)
        both = guidance.denoiser.call(z_t, t, [target, source])  # the former single call of 2B
        batched = grads(both[B:])
    torch.testing.assert_close(eps_tgt, both[:B].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eps_src.detach(), both[B:].detach(), rtol=1e-5, atol=1e-6)
    assert any(v.abs().sum() > 0 for v in split.values())
    for k in split:
        torch.testing.assert_close(split[k], batched[k], rtol=1e-4, atol=1e-8)


# ----------------------------------------------------------------------------------------------
# The filter's decision without a decode


def filter_cfg(space, **kw):
    from generators.config import FilterConfig

    return FilterConfig(enabled=True, gamma=0.03, space=space, **kw)


def smooth_images(n=4, size=32, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bilinear")


def test_calibration_of_a_lossless_linear_codec_is_exact():
    """Pixel-unshuffle latents are 2 rgb - 1: no reconstruction error, and pixel MSE = latent MSE / 4."""
    from generators.guidance.pseudo_source import calibrate_codec
    from generators.models.codec import PixelUnshuffleCodec

    cal = calibrate_codec(PixelUnshuffleCodec(2), 32, torch.device("cpu"), filter_cfg("latent-calibrated"))
    assert cal.floor == pytest.approx(0.0, abs=1e-12)
    assert cal.gain == pytest.approx(0.25, rel=1e-5)


def test_latent_calibrated_filter_decides_as_the_exact_one_on_a_lossless_codec():
    from generators.guidance.pseudo_source import FilterDecision, reconstruction_error_latent
    from generators.models.codec import PixelUnshuffleCodec

    codec = PixelUnshuffleCodec(2)
    images = smooth_images(n=8)
    latents = codec.encode(images)
    g = torch.Generator().manual_seed(4)
    # x0_hat errors of growing size, kept inside the codec's range (no clamp in the decode)
    scale = torch.linspace(0.05, 0.8, 8).view(-1, 1, 1, 1)
    x0_hat = (latents + scale * torch.randn(latents.shape, generator=g)).clamp(-1, 1)
    l_lat = reconstruction_error_latent(x0_hat, latents)
    exact = FilterDecision(codec, filter_cfg("pixel"))
    cheap = FilterDecision(codec, filter_cfg("latent-calibrated"))
    e, c = exact.l_rec(x0_hat, latents, images, l_lat), cheap.l_rec(x0_hat, latents, images, l_lat)
    torch.testing.assert_close(c, e, rtol=1e-5, atol=1e-7)
    assert 0 < exact.keep(e).sum() < 8  # the views straddle gamma
    assert torch.equal(exact.keep(e), cheap.keep(c))


def test_calibration_is_deterministic_and_leaves_the_random_stream_alone():
    """Measured from fixed probes with its own generator: a resumed run decides as an uninterrupted one."""
    from generators.guidance.pseudo_source import calibrate_codec

    codec = load_models("tiny", {"base"}, "cpu").codec
    state = torch.get_rng_state()
    a = calibrate_codec(codec, 64, torch.device("cpu"), filter_cfg("latent-calibrated"))
    b = calibrate_codec(codec, 64, torch.device("cpu"), filter_cfg("latent-calibrated"))
    assert a == b and a.gain > 0 and a.floor > 0
    assert torch.equal(torch.get_rng_state(), state)


def test_exact_filter_is_the_decode_it_always_was():
    from generators.guidance.pseudo_source import FilterDecision, reconstruction_error_latent, reconstruction_error_pixel

    codec = load_models("tiny", {"base"}, "cpu").codec
    images = smooth_images(n=2, size=64)
    latents = codec.encode(images, latent_sample="mean")
    x0_hat = latents + 0.3 * torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    got = FilterDecision(codec, filter_cfg("pixel")).l_rec(x0_hat, latents, images,
                                                         reconstruction_error_latent(x0_hat, latents))
    assert torch.equal(got, reconstruction_error_pixel(codec.decode(x0_hat), images))


def test_black_target_image_is_encoded_once_and_unchanged():
    """target_image "black": the black image's IP features are constant, so the second step reuses them."""
    from generators.config import CameraConfig, GuidanceConfig
    from generators.guidance.sources import IPAdapterSource

    models = load_models("tiny", {"base", "ip_adapter"}, "cpu")
    cfg = GuidanceConfig()
    cfg.source.kind = "ip-adapter"
    cfg.source.ip_adapter.target_image = "black"
    source = IPAdapterSource(models, cfg, CameraConfig(), "a red apple")
    cams = make_cameras(torch.full((B,), 15.0), torch.linspace(0, 240, B), torch.full((B,), 3.0),
                        torch.full((B,), 50.0), 64, 64)
    render = fixed_render()
    ctx = StepContext(0, cams, render.rgb.permute(0, 3, 1, 2), render)
    calls = []
    hook = models.image_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].abs().sum().item()))
    try:
        first, _ = source.branches(ctx)
        second, _ = source.branches(ctx)
    finally:
        hook.remove()
    assert len(calls) == 3 and calls[0] == calls[2] != calls[1]  # renders twice, the black image once
    with torch.no_grad():
        fresh = source.image_embeds(torch.zeros_like(ctx.images))
    assert torch.equal(first.image_embeds, fresh) and torch.equal(second.image_embeds, fresh)
