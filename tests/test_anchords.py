"""AnchorDS's pieces on the tiny models: per-view IP conditioning, the text-only target branch,
ControlNet conditioning, the filter, and the finetune."""

import pytest
import torch

from generators.cameras import make_cameras
from generators.config import GuidanceConfig, CameraConfig
from generators.guidance.denoiser import BranchInputs, UNetDenoiser
from generators.guidance.guide import Guidance
from generators.guidance.sources import IPAdapterSource
from generators.models.loader import load_models
from generators.render.types import RenderOutput

B = 3


@pytest.fixture(scope="module")
def ip_models():
    return load_models("tiny", {"base", "ip_adapter"}, "cpu")


@pytest.fixture(scope="module")
def cn_models():
    return load_models("tiny", {"base", "controlnet"}, "cpu")


def cameras(n=B, size=64):
    return make_cameras(torch.full((n,), 15.0), torch.linspace(0, 240, n), torch.full((n,), 3.0),
                        torch.full((n,), 50.0), size, size)


def fixed_render(seed=0, n=B, size=64):
    """A RenderOutput made of fixed images (smooth colour fields) and a plausible depth."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").permute(0, 2, 3, 1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    depth = (3.0 - 0.5 * torch.clamp(1 - xx**2 - yy**2, min=0).sqrt())[None, ..., None].expand(n, -1, -1, -1)
    alpha = ((xx**2 + yy**2) < 1).float()[None, ..., None].expand(n, -1, -1, -1)
    return RenderOutput(rgb.contiguous(), alpha.contiguous(), depth.contiguous(), torch.zeros(n, 1, 2),
                        torch.zeros(n, 1, dtype=torch.int32))


def ip_config(**ip):
    c = GuidanceConfig()
    c.vae_input_size = 64
    c.source.kind = "ip-adapter"
    for k, v in ip.items():
        setattr(c.source.ip_adapter, k, v)
    return c


def render_of(images):
    """fixed_render's geometry with `images` [B, 3, S, S] as its colours."""
    r = fixed_render(n=images.shape[0], size=images.shape[-1])
    return RenderOutput(images.permute(0, 2, 3, 1).contiguous(), r.alpha, r.depth, r.means2d, r.radii)


def source_eps(models, cfg, images, z_t, t):
    src = IPAdapterSource(models, cfg, CameraConfig(), "a red apple")
    models.set_ip_adapter_scale(cfg.source.ip_adapter.scale)
    from generators.guidance.sources import StepContext

    ctx = StepContext(0, cameras(), images, render_of(images))
    tgt, srcb = src.branches(ctx)
    with torch.no_grad():
        return UNetDenoiser(models.unet).predict(z_t, t, tgt, srcb)


def test_each_view_is_conditioned_on_its_own_render_only(ip_models):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(B, 3, 64, 64, generator=g)
    z_t, t = torch.randn(B, 4, 8, 8, generator=g), torch.tensor([300, 500, 700])
    changed = images.clone()
    changed[1] = torch.rand(3, 64, 64, generator=g)  # view 2's render changes

    cfg = ip_config(conditioning="per-view")
    _, a = source_eps(ip_models, cfg, images, z_t, t)
    _, b = source_eps(ip_models, cfg, changed, z_t, t)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])  # views 1 and 3 untouched
    assert not torch.allclose(a[1], b[1])

    # the released code's cross-view conditioning would fail the first assertion
    cfg = ip_config(conditioning="all-views")
    _, a = source_eps(ip_models, cfg, images, z_t, t)
    _, b = source_eps(ip_models, cfg, changed, z_t, t)
    assert not torch.allclose(a[0], b[0])


@pytest.mark.parametrize("preprocess", ["clip", "released"])
def test_the_image_encoder_sees_the_render_resized_once_from_the_render_size(ip_models, preprocess):
    """CLIP: one antialiased bicubic resize of the render (as CLIPImageProcessor's PIL resize), not a
    resize of the VAE-sized image; released: bilinear, unnormalised, as the released code."""
    from generators.guidance.guide import images_for_vae
    from generators.guidance.sources import StepContext

    g = torch.Generator().manual_seed(5)
    render = render_of(torch.rand(B, 3, 128, 128, generator=g))  # high-frequency content, 128 px
    images = images_for_vae(render, 64)  # what the VAE gets
    seen = []
    hook = ip_models.image_encoder.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(
        kwargs.get("pixel_values", args[0] if args else None)), with_kwargs=True)
    try:
        cfg = ip_config(preprocess=preprocess)
        IPAdapterSource(ip_models, cfg, CameraConfig(), "x").branches(StepContext(0, cameras(), images, render))
    finally:
        hook.remove()
    size = ip_models.image_encoder.config.image_size
    rgb = render.rgb.permute(0, 3, 1, 2)
    if preprocess == "clip":
        proc = ip_models.image_processor
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (proc.image_mean, proc.image_std))
        shrunk = torch.nn.functional.interpolate(rgb, size=(size, size), mode="bicubic", antialias=True)
        expected = (shrunk.clamp(0, 1) - mean) / std
        aliased = (torch.nn.functional.interpolate(images, size=(size, size), mode="bicubic").clamp(0, 1) - mean) / std
        assert (expected - aliased).abs().max() > 0.1  # the two resizes differ on this render
    else:
        expected = torch.nn.functional.interpolate(rgb, size=(size, size), mode="bilinear")
    torch.testing.assert_close(seen[0], expected)


def test_paper_target_is_text_only_inside_the_batched_call(ip_models):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(B, 3, 64, 64, generator=g)
    z_t, t = torch.randn(B, 4, 8, 8, generator=g), torch.tensor([100, 400, 900])
    tgt_none, _ = source_eps(ip_models, ip_config(target_image="none"), images, z_t, t)
    tgt_render, _ = source_eps(ip_models, ip_config(target_image="render"), images, z_t, t)
    # reference: the same target with the IP branch switched off entirely (scale 0)
    reference, _ = source_eps(ip_models, ip_config(scale=0.0, target_image="render"), images, z_t, t)
    ip_models.set_ip_adapter_scale(1.0)
    torch.testing.assert_close(tgt_none, reference, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(tgt_render, reference)


def test_controlnet_map_reaches_the_source_branch_only(cn_models):
    g = torch.Generator().manual_seed(2)
    den = UNetDenoiser(cn_models.unet, cn_models.controlnet)
    text = cn_models.encode_text(["a red apple"] * B)
    z_t, t = torch.randn(B, 4, 8, 8, generator=g), torch.tensor([200, 500, 800])
    map_a, map_b = torch.rand(B, 3, 64, 64, generator=g), torch.rand(B, 3, 64, 64, generator=g)
    with torch.no_grad():
        ta, sa = den.predict(z_t, t, BranchInputs(text), BranchInputs(text, control_image=map_a, control_scale=1.0))
        tb, sb = den.predict(z_t, t, BranchInputs(text), BranchInputs(text, control_image=map_b, control_scale=1.0))
        t0, s0 = den.predict(z_t, t, BranchInputs(text), BranchInputs(text, control_image=map_a, control_scale=0.0))
    assert torch.equal(ta, tb)  # the target half never sees the control
    assert not torch.allclose(sa, sb)  # a different map changes the source prediction
    torch.testing.assert_close(s0, t0)  # scale 0 (the released code's effective value) = no anchor


def _guidance(models, cfg):
    return Guidance(models, cfg, CameraConfig(), "a red apple")


def test_filter_zeroes_exactly_the_views_above_gamma(ip_models):
    cfg = ip_config()
    cfg.filter.enabled, cfg.filter.space, cfg.filter.gamma = True, "pixel", float("inf")
    render = fixed_render(3)
    rgb = render.rgb.clone().requires_grad_(True)
    render.rgb = rgb
    first = _guidance(ip_models, cfg)(render, cameras(), 0, torch.Generator().manual_seed(7))
    l_rec = first.l_rec
    assert first.keep.tolist() == [1.0] * B and l_rec.unique().numel() == B
    cfg.filter.gamma = float(l_rec.sort().values[1])  # keeps the two smallest, drops the largest
    rgb.grad = None
    second = _guidance(ip_models, cfg)(render, cameras(), 0, torch.Generator().manual_seed(7))
    torch.testing.assert_close(second.l_rec, l_rec)
    assert second.keep.tolist() == (l_rec <= cfg.filter.gamma).float().tolist()
    second.loss_sds.backward()
    per_view = rgb.grad.flatten(1).abs().sum(1)
    for v in range(B):
        assert (per_view[v] == 0) == (second.keep[v] == 0)


def test_finetune_trains_exactly_the_chosen_layer_and_lowers_l_rec():
    models = load_models("tiny", {"base", "ip_adapter"}, "cpu")  # private copy: it gets trained
    cfg = ip_config()
    cfg.finetune.enabled, cfg.finetune.lr = True, 3e-3
    guide = _guidance(models, cfg)
    trained = {id(p) for p in guide.finetune.params.values()}
    assert all(".up_blocks.3." in "." + n or n.startswith("up_blocks.3.") for n in guide.finetune.params)
    assert all("to_k_ip" in n or "to_v_ip" in n for n in guide.finetune.params)
    modules = {"unet": models.unet, "vae": models.vae, "text": models.text_encoder, "image": models.image_encoder}
    before = {f"{m}.{n}": p.detach().clone() for m, mod in modules.items() for n, p in mod.named_parameters()}

    render = fixed_render(4)
    render.rgb.requires_grad_(True)

    def l_rec_at_fixed_noise():
        with torch.no_grad():
            return guide(render, cameras(), 0, torch.Generator().manual_seed(123)).l_rec.mean().item()

    start = l_rec_at_fixed_noise()
    for step in range(12):
        out = guide(render, cameras(), step, torch.Generator().manual_seed(step))
        guide.finetune.zero_grad()
        out.loss_finetune.backward()
        guide.finetune.step()
    assert render.rgb.grad is None  # L_rec never reaches the render (the released code's defect 6)
    assert l_rec_at_fixed_noise() < start

    changed = set()
    for m, mod in modules.items():
        for n, p in mod.named_parameters():
            if not torch.equal(p.detach(), before[f"{m}.{n}"]):
                changed.add(id(p))
    assert changed == trained  # exactly the selected parameters moved, every other weight bit-identical
