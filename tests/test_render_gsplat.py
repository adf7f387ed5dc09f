"""gsplat (CUDA) against the dense renderer, on the same GPU. Skipped without CUDA.

Tolerances. Both compute the same float32 formulas; they differ by operation order and fast-math
exp (__expf), about 1e-6 relative. Larger, rare differences come from discrete decisions taken
on values within rounding of a threshold: a pixel whose alpha is within rounding of 1/255 is
kept by one and skipped by the other (<= 0.004 change of that pixel's colour and alpha), and a
pixel whose transmittance is within rounding of 1e-4 stops one Gaussian earlier (<= 1e-4
change). Hence max abs < 1e-2 (a few such events stacked) and mean abs < 1e-4 for rgb and
alpha; expected depth is compared only where alpha > 0.2, where dividing by alpha magnifies
one such event to at most 0.004 * (depth spread ~2) / 0.2 = 0.04: max abs < 5e-2, mean < 1e-3.
Gradients are sums over many pixels, so the same events move them a little: cosine similarity
> 0.99 per parameter (and for means2d.grad), plus relative error of the norm < 0.15.
"""

from __future__ import annotations

import pytest
import torch

from generators.cameras import orbit_cameras, sample_training_cameras
from generators.config import CameraConfig, RenderConfig
from generators.gaussians import Gaussians, rgb_to_sh0
from generators.gaussians.model import inverse_sigmoid

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat needs a CUDA GPU"),
]

DEVICE = "cuda"


def random_scene(n: int, seed: int, sh_degree: int = 0) -> Gaussians:
    """n Gaussians in a ball of radius 0.6: anisotropic, rotated, opacities from faint to opaque."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    means = direction * 0.6 * torch.rand(n, 1, generator=gen) ** (1 / 3)
    scales = torch.log(0.01 + 0.06 * torch.rand(n, 3, generator=gen))
    quats = torch.randn(n, 4, generator=gen)
    opacities = inverse_sigmoid(0.02 + 0.96 * torch.rand(n, generator=gen))
    sh0 = rgb_to_sh0(torch.rand(n, 3, generator=gen))
    shN = 0.2 * torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=gen)
    return Gaussians(means, scales, quats, opacities, sh0, shN, sh_degree).to(DEVICE)


def clone(g: Gaussians) -> Gaussians:
    return Gaussians.from_state(g.state()).to(DEVICE)


def camera_sets(size: int):
    train = sample_training_cameras(CameraConfig(batch_size=4, width=size, height=size), torch.Generator().manual_seed(size))
    orbit = orbit_cameras(3, elevation_deg=15.0, distance=2.5, fov_y_deg=50.0, width=size, height=size)
    return {"train": train, "orbit": orbit}


def compare_images(name: str, ours: torch.Tensor, theirs: torch.Tensor, max_tol: float, mean_tol: float,
                   mask: torch.Tensor | None = None) -> None:
    """Assert |ours - theirs| is small; on failure say where and by how much, per camera."""
    diff = (ours - theirs).abs()
    if mask is not None:
        diff = torch.where(mask, diff, torch.zeros_like(diff))
        count = mask.expand_as(diff).sum().clamp_min(1)
    else:
        count = torch.tensor(diff.numel())
    max_err, mean_err = diff.max().item(), (diff.sum() / count).item()
    if max_err < max_tol and mean_err < mean_tol:
        return
    lines = [f"{name}: max abs {max_err:.3g} (tol {max_tol}), mean abs {mean_err:.3g} (tol {mean_tol})"]
    for c in range(diff.shape[0]):
        d = diff[c]
        flat = int(d.argmax())
        h, w, ch = torch.unravel_index(torch.tensor(flat), d.shape)
        lines.append(
            f"  camera {c}: max {d.max().item():.3g} at row {int(h)}, col {int(w)}, channel {int(ch)} "
            f"(dense {ours[c, h, w, ch].item():.5f}, gsplat {theirs[c, h, w, ch].item():.5f}); "
            f"{int((d > max_tol).sum())} values over tol"
        )
    pytest.fail("\n".join(lines))


def render_both(g: Gaussians, cams, cfg: RenderConfig, background: torch.Tensor):
    from generators.render.dense import render_dense
    from generators.render.gsplat_backend import render_gsplat

    g_dense, g_gsplat = clone(g), clone(g)
    cams = cams.to(DEVICE)
    return (g_dense, render_dense(g_dense, cams, cfg, background)), (g_gsplat, render_gsplat(g_gsplat, cams, cfg, background))


def scalar_loss(out, weights) -> torch.Tensor:
    w_rgb, w_alpha, w_depth = weights
    return (out.rgb * w_rgb).sum() + (out.alpha * w_alpha).sum() + 0.1 * (out.depth * w_depth).sum()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("mode", ["classic", "antialiased"])
@pytest.mark.parametrize("sh_degree", [0, 1])
@pytest.mark.parametrize("cam_set", ["train", "orbit"])
def test_gsplat_matches_dense(size, mode, sh_degree, cam_set):
    g = random_scene(500, seed=size + sh_degree, sh_degree=sh_degree)
    cams = camera_sets(size)[cam_set]
    cfg = RenderConfig(backend="gsplat", rasterize_mode=mode)
    background = torch.tensor([0.3, 0.6, 0.9], device=DEVICE)
    (g_d, dense), (g_s, gs) = render_both(g, cams, cfg, background)

    # screen-space meta: same culling, same centres
    assert dense.radii.shape == gs.radii.shape == (len(cams), 500)
    vis_d, vis_s = dense.radii > 0, gs.radii > 0
    mismatched = int((vis_d != vis_s).sum())
    assert mismatched <= 2, f"visibility differs for {mismatched} (camera, Gaussian) pairs"
    both = vis_d & vis_s
    assert both.sum() > 200, f"only {int(both.sum())} visible pairs: scene does not test much"
    radius_diff = (dense.radii[both] - gs.radii[both]).abs()
    assert radius_diff.max() <= 1 and (radius_diff > 0).float().mean() < 0.01, "radii differ beyond ceil rounding"
    m2d = (dense.means2d[both] - gs.means2d[both]).abs().max().item()
    assert m2d < 1e-3 * size / 64, f"means2d differ by {m2d:.3g} px"

    compare_images("rgb", dense.rgb, gs.rgb, 1e-2, 1e-4)
    compare_images("alpha", dense.alpha, gs.alpha, 1e-2, 1e-4)
    solid = (dense.alpha > 0.2) & (gs.alpha > 0.2)
    assert solid.sum() > 0.02 * solid.numel(), "almost nothing opaque on screen"
    compare_images("depth where alpha > 0.2", dense.depth, gs.depth, 5e-2, 1e-3, mask=solid)

    # gradients of one scalar loss on every output
    gen = torch.Generator().manual_seed(1)
    weights = tuple(torch.rand(t.shape, generator=gen).to(DEVICE) for t in (dense.rgb, dense.alpha, dense.depth))
    scalar_loss(dense, weights).backward()
    scalar_loss(gs, weights).backward()
    report = []
    for name in ["means", "scales", "quats", "opacities", "sh0"] + (["shN"] if sh_degree else []):
        a, b = g_d.params[name].grad, g_s.params[name].grad
        cos = cosine(a, b)
        rel = ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
        report.append((name, cos, rel))
    cos2d = cosine(dense.means2d.grad[both], gs.means2d.grad[both])
    report.append(("means2d", cos2d, ((dense.means2d.grad[both] - gs.means2d.grad[both]).norm()
                                      / gs.means2d.grad[both].norm()).item()))
    bad = [r for r in report if r[1] <= 0.99 or r[2] >= 0.15]
    assert not bad, "gradient mismatch (name, cosine, relative error):\n" + "\n".join(
        f"  {n}: cos {c:.5f}, rel {r:.4f}" for n, c, r in report)


def test_packed_equals_unpacked_including_means2d_grad():
    g = random_scene(500, seed=3)
    cams = camera_sets(64)["train"].to(DEVICE)
    background = torch.zeros(3, device=DEVICE)
    from generators.render.gsplat_backend import render_gsplat

    outs = {}
    for packed in (False, True):
        gg = clone(g)
        out = render_gsplat(gg, cams, RenderConfig(backend="gsplat", packed=packed), background)
        (out.rgb.sum() + out.depth.mean()).backward()
        outs[packed] = (gg, out)
    (g_u, u), (g_p, p) = outs[False], outs[True]
    torch.testing.assert_close(p.rgb, u.rgb, atol=1e-5, rtol=0)
    assert torch.equal(p.radii, u.radii)
    vis = u.radii > 0
    torch.testing.assert_close(p.means2d[vis], u.means2d[vis], atol=1e-4, rtol=0)
    assert p.means2d.grad is not None and u.means2d.grad is not None
    torch.testing.assert_close(p.means2d.grad[vis], u.means2d.grad[vis], atol=1e-6, rtol=1e-3)
    assert (p.means2d.grad[~vis] == 0).all()
    torch.testing.assert_close(g_p.params["means"].grad, g_u.params["means"].grad, atol=1e-6, rtol=1e-3)


def test_render_dispatch_picks_gsplat_on_cuda():
    from generators.render import render, resolve_backend

    g = random_scene(50, seed=0)
    assert resolve_backend(RenderConfig(), g.device) == "gsplat"
    out = render(g, camera_sets(64)["orbit"], RenderConfig())
    assert out.rgb.device.type == "cuda" and out.rgb.shape == (3, 64, 64, 3) and out.radii.dtype == torch.int32
