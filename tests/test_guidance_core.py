"""The score-distillation core against oracle denoisers whose answers are known in closed form."""

import pytest
import torch

from generators.config import GuidanceConfig
from generators.guidance.denoiser import BranchInputs
from generators.guidance.pseudo_source import filter_mask, predict_x0, reconstruction_error_latent
from generators.guidance.score_distillation import (
    combine_cfg,
    distillation_loss,
    effective_diffusers_scale,
    sample_timesteps,
    score_distillation,
)

T = 1000
ALPHAS = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, T) ** 2, 0)  # SD's scaled-linear


class OracleDenoiser:
    """eps(z_t) exact for a known clean latent per branch: eps = (z_t - sqrt(a) x0) / sqrt(1 - a).

    `target_x0` / `source_x0`: the clean latents each branch 'believes in'; a branch given the
    string "current" knows the latent being optimised (it returns the true noise of z_t).
    """

    def __init__(self, target_x0, source_x0, current=None):
        self.target_x0, self.source_x0, self.current = target_x0, source_x0, current
        self.calls = 0

    def _eps(self, z_t, t, x0):
        a = ALPHAS[t].view(-1, 1, 1, 1)
        x0 = self.current() if isinstance(x0, str) else x0
        return (z_t - a.sqrt() * x0) / (1 - a).sqrt()

    def predict(self, z_t, t, target, source):
        self.calls += 1
        return self._eps(z_t, t, self.target_x0), self._eps(z_t, t, self.source_x0)


def branches(b):
    text = torch.zeros(b, 4, 8)
    return BranchInputs(text), BranchInputs(text)


def cfg(**kw):
    c = GuidanceConfig()
    c.grad_clip = None
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_timesteps_follow_the_schedule_and_cap_after_step_500():
    c = GuidanceConfig()
    g = torch.Generator().manual_seed(0)
    early = sample_timesteps(c, 0, 20000, T, g)
    late = sample_timesteps(c, 501, 20000, T, g)
    assert early.min() == 20 and early.max() == 980
    assert late.min() == 20 and late.max() == 550
    assert sample_timesteps(c, 500, 20000, T, g).max() == 980  # the cap applies when step > 500


def test_cfg_conventions():
    tgt, src = torch.tensor([2.0]), torch.tensor([1.0])
    assert combine_cfg(tgt, src, 100.0, "threestudio").item() == pytest.approx(2 + 100 * 1)
    assert combine_cfg(tgt, src, 101.0, "diffusers").item() == pytest.approx(1 + 101 * 1)
    assert effective_diffusers_scale(100.0, "threestudio") == 101.0
    assert effective_diffusers_scale(7.5, "diffusers") == 7.5


def test_distillation_loss_gradient_is_grad_over_batch():
    z = torch.randn(3, 4, 8, 8, requires_grad=True)
    grad = torch.randn(3, 4, 8, 8)
    distillation_loss(z, grad).backward()
    torch.testing.assert_close(z.grad, grad / 3)


def test_sign_and_scale_against_an_oracle():
    """With both branches exact for x*, grad = w(t) (eps_tgt - eps) = w sqrt(a)/sqrt(1-a) (z - x*)."""
    g = torch.Generator().manual_seed(1)
    x_star = torch.randn(2, 4, 8, 8, generator=g)
    z = torch.randn(2, 4, 8, 8, generator=g)
    oracle = OracleDenoiser(x_star, x_star)
    out = score_distillation(oracle, ALPHAS, z, *branches(2), cfg(), step=0, generator=g)
    a = ALPHAS[out.t].view(-1, 1, 1, 1)
    expected = (1 - a) * a.sqrt() / (1 - a).sqrt() * (z - x_star)
    torch.testing.assert_close(out.grad, expected, rtol=1e-4, atol=1e-5)
    assert oracle.calls == 1  # target and source in one call


def test_oracle_distillation_drives_a_free_latent_to_the_target():
    g = torch.Generator().manual_seed(2)
    x_star = torch.randn(1, 4, 8, 8, generator=g)
    z = torch.zeros(1, 4, 8, 8, requires_grad=True)
    oracle = OracleDenoiser(x_star, x_star)
    opt = torch.optim.SGD([z], lr=0.5)
    c = cfg(guidance_scale=7.5)
    start = (z - x_star).norm().item()
    for step in range(300):
        out = score_distillation(oracle, ALPHAS, z, *branches(1), c, step, g)
        opt.zero_grad()
        distillation_loss(z, out.grad).backward()
        opt.step()
    assert (z - x_star).norm().item() < 0.05 * start


@pytest.mark.parametrize("convention, factor", [("threestudio", 101.0), ("diffusers", 100.0)])
def test_anchored_source_removes_the_variance_term_sds_keeps_it(convention, factor):
    """A source that knows the current latent predicts the true noise: the CFG gradient then equals
    the target term alone (times the guidance factor); an unconditional source adds a variance term."""
    g = torch.Generator().manual_seed(3)
    x_star = torch.randn(4, 4, 8, 8, generator=g)
    z = torch.randn(4, 4, 8, 8, generator=g)
    c = cfg(guidance_scale=100.0, cfg_convention=convention)

    anchored = OracleDenoiser(x_star, "current", current=lambda: z)
    out = score_distillation(anchored, ALPHAS, z, *branches(4), c, 0, torch.Generator().manual_seed(9))
    w = 1 - out.alpha_bar.view(-1, 1, 1, 1)
    target_term = out.eps_tgt - out.noise
    torch.testing.assert_close(out.grad, w * factor * target_term, rtol=1e-4, atol=1e-4)

    sds = OracleDenoiser(x_star, torch.zeros_like(z))  # the unconditional prior's clean guess
    out2 = score_distillation(sds, ALPHAS, z, *branches(4), c, 0, torch.Generator().manual_seed(9))
    variance = out2.grad - w * factor * (out2.eps_tgt - out2.noise)
    assert variance.norm() > 0.1 * out2.grad.norm()


def test_grad_clip_ramp_and_nan_guard():
    g = torch.Generator().manual_seed(4)
    x_star = torch.full((1, 4, 8, 8), 50.0)
    z = torch.zeros(1, 4, 8, 8)
    c = GuidanceConfig()  # grad_clip [0, 1.5, 2.0, 1000]
    out0 = score_distillation(OracleDenoiser(x_star, torch.zeros_like(z)), ALPHAS, z, *branches(1), c, 0, g)
    out1 = score_distillation(OracleDenoiser(x_star, torch.zeros_like(z)), ALPHAS, z, *branches(1), c, 500, g)
    assert out0.grad.abs().max().item() == pytest.approx(1.5)
    assert out1.grad.abs().max().item() == pytest.approx(1.75)

    class NaNOracle(OracleDenoiser):
        def predict(self, z_t, t, target, source):
            e, s = super().predict(z_t, t, target, source)
            e[0, 0, 0, 0] = float("nan")
            return e, s

    out = score_distillation(NaNOracle(x_star, x_star), ALPHAS, z, *branches(1), c, 0, g)
    assert torch.isfinite(out.grad).all()


def test_difference_mode_is_plain_eps_difference():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    z = torch.randn(2, 4, 8, 8, generator=g)
    out = score_distillation(OracleDenoiser(a, b), ALPHAS, z, *branches(2), GuidanceConfig(), 0, g,
                             mode="difference", difference_weight=3.0)
    torch.testing.assert_close(out.grad, 3.0 * (out.eps_tgt - out.eps_src.detach()))


def test_pseudo_source_recovers_the_source_latent_exactly():
    """x0_hat uses alpha_bar of the sampled t: an oracle source for x_s gives back x_s."""
    g = torch.Generator().manual_seed(6)
    x_s = torch.randn(3, 4, 8, 8, generator=g)
    z = torch.randn(3, 4, 8, 8, generator=g)
    out = score_distillation(OracleDenoiser(x_s, x_s), ALPHAS, z, *branches(3), cfg(), 0, g)
    x0 = predict_x0(out.z_t, out.eps_src, out.alpha_bar)
    torch.testing.assert_close(x0, x_s, rtol=1e-3, atol=1e-3)
    l_rec = reconstruction_error_latent(x0, z)
    torch.testing.assert_close(l_rec, ((x_s - z) ** 2).flatten(1).mean(1), rtol=1e-3, atol=1e-3)


def test_filter_mask_drops_exactly_the_views_above_gamma():
    l_rec = torch.tensor([0.01, 0.05, 0.03, 0.0300001, 0.2])
    assert filter_mask(l_rec, 0.03).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_oracle_distillation_drives_a_tiny_scene_to_the_target_image():
    """Through the real renderer and a pixel-space codec: colours of a Gaussian scene converge to a
    target render when the denoiser's answer is exact for the target's latent."""
    from generators.cameras import make_cameras
    from generators.config import RenderConfig
    from generators.gaussians import Gaussians
    from generators.models.codec import PixelUnshuffleCodec
    from generators.render import render

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    n = 40
    pts = (torch.rand(n, 3, generator=g) - 0.5) * 1.2
    scene = lambda colors: Gaussians.from_points(pts, colors, torch.full((n,), 0.25), opacity=0.9)  # noqa: E731
    cams = make_cameras(torch.tensor([10.0, 30.0]), torch.tensor([0.0, 120.0]), torch.tensor([3.0, 3.0]),
                        torch.tensor([45.0, 45.0]), 16, 16)
    rcfg = RenderConfig(background=(0.0, 0.0, 0.0))
    codec = PixelUnshuffleCodec(2)
    with torch.no_grad():
        target_rgb = render(scene(torch.rand(n, 3, generator=g)), cams, rcfg).rgb
        x_star = codec.encode(target_rgb.permute(0, 3, 1, 2))
    gaussians = scene(torch.full((n, 3), 0.5))
    opt = torch.optim.Adam([gaussians.params["sh0"]], lr=0.05)
    c = cfg(guidance_scale=0.0, t_max=0.5)

    def error():
        with torch.no_grad():
            return (render(gaussians, cams, rcfg).rgb - target_rgb).abs().mean().item()

    start = error()
    for step in range(150):
        latents = codec.encode(render(gaussians, cams, rcfg).rgb.permute(0, 3, 1, 2))
        out = score_distillation(OracleDenoiser(x_star, x_star), ALPHAS, latents, *branches(2), c, step, g)
        opt.zero_grad()
        distillation_loss(latents, out.grad).backward()
        opt.step()
    assert error() < 0.3 * start
