"""Initial Gaussians: noisy point growing, k-NN scales, random ball."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from generators.config import InitConfig
from generators.gaussians.init import (gaussians_from_points, grow_point_cloud, init_ball,
                                       knn_scales)
from generators.gaussians.model import SH_C0


def _shape(seed: int = 0, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """A Shap-E-like vertex cloud: points on a sphere of radius 0.4, colours near 1."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g)
    v = 0.4 * v / v.norm(dim=1, keepdim=True)
    c = 0.9 + 0.1 * torch.rand(n, 3, generator=g)
    return v, c


# 150k samples: more than one query chunk (65,536), so chunk bookkeeping is exercised
_GROW_CFG = InitConfig(growth_samples=150_000, growth_radius=0.05, color_jitter=0.2, bound=1.6)


@pytest.fixture(scope="module")
def grown():
    verts, colors = _shape()
    pts, cols = grow_point_cloud(verts, colors, _GROW_CFG, torch.Generator().manual_seed(7))
    return verts, colors, pts, cols


def test_grow_keeps_only_points_near_a_vertex_and_appends_vertices(grown):
    verts, colors, pts, cols = grown
    cfg = _GROW_CFG
    v = verts.shape[0]
    assert pts.shape == cols.shape and pts.shape[1] == 3
    kept = pts.shape[0] - v
    assert kept > 1000  # a shell of radius 0.05 around 300 sphere points holds many samples

    # the original vertices come last, scaled by bound, with their own colours
    torch.testing.assert_close(pts[kept:], verts * cfg.bound)
    torch.testing.assert_close(cols[kept:], colors)

    # brute-force nearest scaled vertex (independent of the k-d tree)
    d = torch.cdist(pts[:kept].double(), (verts.double() * cfg.bound))  # [K, V]
    dmin, nearest = d.min(dim=1)
    assert float(dmin.max()) < cfg.growth_radius * cfg.bound * (1 + 1e-6)

    # colour = nearest vertex colour + jitter in [0, color_jitter)
    jitter = cols[:kept].double() - colors.double()[nearest]
    assert float(jitter.min()) >= -1e-6
    assert float(jitter.max()) < cfg.color_jitter + 1e-6
    # jitter is uniform, so it spans most of its range, and is not clamped at 1
    assert float(jitter.max()) > 0.9 * cfg.color_jitter and float(jitter.min()) < 0.1 * cfg.color_jitter
    assert float(cols.max()) > 1.0


def test_grow_respects_bbox(grown):
    verts, _, pts, _ = grown
    lo = verts.min(dim=0).values * _GROW_CFG.bound
    hi = verts.max(dim=0).values * _GROW_CFG.bound
    assert bool((pts >= lo - 1e-6).all()) and bool((pts <= hi + 1e-6).all())


def test_grow_keeps_exactly_the_samples_within_radius():
    """Every uniform sample closer than growth_radius is kept, none farther (checks "<")."""
    verts, colors = _shape(n=50)
    cfg = dataclasses.replace(_GROW_CFG, growth_samples=70_000, bound=1.0)
    pts, _ = grow_point_cloud(verts, colors, cfg, torch.Generator().manual_seed(3))
    # regenerate the same uniform samples (the first draw from the generator)
    u = torch.rand(cfg.growth_samples, 3, generator=torch.Generator().manual_seed(3),
                   dtype=torch.float64)
    lo, hi = verts.double().min(0).values, verts.double().max(0).values
    samples = lo + u * (hi - lo)
    near = torch.cdist(samples, verts.double()).min(dim=1).values < cfg.growth_radius
    expected = samples[near]
    assert pts.shape[0] - verts.shape[0] == expected.shape[0]
    torch.testing.assert_close(pts[: expected.shape[0]], expected.float())


def test_grow_is_deterministic_from_the_generator():
    verts, colors = _shape(n=100)
    cfg = dataclasses.replace(_GROW_CFG, growth_samples=20_000)
    a = grow_point_cloud(verts, colors, cfg, torch.Generator().manual_seed(1))
    b = grow_point_cloud(verts, colors, cfg, torch.Generator().manual_seed(1))
    c = grow_point_cloud(verts, colors, cfg, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not torch.equal(a[0], c[0])


def test_grow_rejects_bad_shapes():
    with pytest.raises(ValueError, match="verts"):
        grow_point_cloud(torch.zeros(0, 3), torch.zeros(0, 3), _GROW_CFG, torch.Generator())
    with pytest.raises(ValueError, match="colors"):
        grow_point_cloud(torch.zeros(4, 3), torch.zeros(4, 4), _GROW_CFG, torch.Generator())


def _lattice(n: int, hx: float, hy: float, hz: float) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    gx, gy, gz = torch.meshgrid(i * hx, i * hy, i * hz, indexing="ij")
    return torch.stack([gx, gy, gz], dim=-1).reshape(-1, 3).float()


def test_knn_scale_on_cubic_lattice_is_the_spacing():
    h = 0.1
    pts = _lattice(5, h, h, h)
    s = knn_scales(pts, InitConfig())
    torch.testing.assert_close(s, torch.full_like(s, h), rtol=1e-5, atol=0)


def test_knn_scale_is_rms_of_the_three_nearest_distances():
    # interior point of an (0.1, 0.2, 0.3) lattice: nearest 3 are at 0.1, 0.1, 0.2
    pts = _lattice(5, 0.1, 0.2, 0.3)
    s = knn_scales(pts, InitConfig()).reshape(5, 5, 5)
    expected = math.sqrt((0.1**2 + 0.1**2 + 0.2**2) / 3)  # RMS, not the mean distance 0.1333
    torch.testing.assert_close(s[1:4, 1:4, 1:4], torch.full((3, 3, 3), expected), rtol=1e-5, atol=0)
    # a corner's nearest 3: one step along x (0.1), two steps along x (0.2), one along y (0.2)
    corner = math.sqrt((0.1**2 + 0.2**2 + 0.2**2) / 3)
    assert s[0, 0, 0].item() == pytest.approx(corner, rel=1e-5)


def test_knn_scale_clamps_duplicates():
    pts = torch.zeros(5, 3)
    s = knn_scales(pts, InitConfig(min_scale_sq=1e-7))
    torch.testing.assert_close(s, torch.full((5,), math.sqrt(1e-7)))


def test_gaussians_from_points_attributes():
    pts = _lattice(4, 0.1, 0.1, 0.1)
    colors = torch.rand(pts.shape[0], 3, generator=torch.Generator().manual_seed(0))
    cfg = InitConfig(opacity=0.1, sh_degree=2)
    g = gaussians_from_points(pts, colors, cfg)
    assert len(g) == 64 and g.sh_degree == 2
    torch.testing.assert_close(g.means, pts)
    torch.testing.assert_close(g.scales_act, torch.full((64, 3), 0.1), rtol=1e-5, atol=0)
    torch.testing.assert_close(g.quats_normalized, torch.tensor([1.0, 0, 0, 0]).expand(64, 4))
    torch.testing.assert_close(g.opacities_act, torch.full((64,), 0.1))
    torch.testing.assert_close(SH_C0 * g.params["sh0"][:, 0] + 0.5, colors)
    assert g.params["shN"].shape == (64, 8, 3) and float(g.params["shN"].detach().abs().max()) == 0.0


def test_init_ball():
    cfg = InitConfig(ball_points=4000, ball_radius=0.5, opacity=0.1)
    g = init_ball(cfg, torch.Generator().manual_seed(0))
    r = g.means.detach().norm(dim=1)
    assert len(g) == 4000 and float(r.max()) <= 0.5 + 1e-6
    # uniform in volume: P(r < R/2) = 1/8 (binomial std ~ 0.005)
    assert abs(float((r < 0.25).float().mean()) - 0.125) < 0.025
    torch.testing.assert_close(g.opacities_act, torch.full((4000,), 0.1))
    colors = SH_C0 * g.params["sh0"].detach()[:, 0] + 0.5
    assert float(colors.min()) >= 0.0 and float(colors.max()) < 1.0 and float(colors.std()) > 0.2
    # scales from k-NN: mean spacing of 4000 points in a 0.5 ball is a few hundredths
    assert 0.005 < float(g.scales_act.detach().median()) < 0.1
    g2 = init_ball(cfg, torch.Generator().manual_seed(0))
    assert torch.equal(g.means, g2.means)
