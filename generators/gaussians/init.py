"""Initial 3D Gaussians: a random ball, or GaussianDreamer's noisy growth around Shap-E vertices.

GaussianDreamer (gaussiandreamer-recipe.md section 1) samples points uniformly in the bounding
box of the Shap-E vertices, keeps those close to a vertex, jitters their colours, appends the
vertices themselves and scales everything by `bound`. Each point then becomes an isotropic
Gaussian whose size is the RMS distance to its nearest neighbours (Inria's `distCUDA2`).

All randomness comes from a `torch.Generator`, never from numpy's global RNG, so a run is
reproducible from its seed alone.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from generators.config import InitConfig
from generators.gaussians.model import Gaussians

# Growth samples are tested against the vertex tree in chunks of this many points, so one
# million samples never need more than a few MiB of query buffers at once. Not a recipe value.
_QUERY_CHUNK = 65_536


def grow_point_cloud(verts: Tensor, colors: Tensor, cfg: InitConfig,
                     generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """GaussianDreamer's noisy point growing.

    verts   [V, 3]  Shap-E mesh vertices (Shap-E units)
    colors  [V, 3]  their RGB in [0, 1]
    returns (points [M, 3], colors [M, 3]) float32 on the CPU, with M = kept + V: the kept
            samples first, then the original vertices, all positions multiplied by `cfg.bound`.
            Kept colours are the nearest vertex's colour + cfg.color_jitter * U[0,1)^3, not
            clamped (as in GaussianDreamer).
    """
    if verts.ndim != 2 or verts.shape[1] != 3 or verts.shape[0] == 0:
        raise ValueError(f"verts must be a non-empty [V, 3] tensor, got shape {tuple(verts.shape)}")
    if colors.shape != verts.shape:
        raise ValueError(f"colors {tuple(colors.shape)} must match verts {tuple(verts.shape)}")

    v = verts.detach().cpu().double()
    c = colors.detach().cpu().double()
    lo = v.min(dim=0).values
    hi = v.max(dim=0).values

    # Uniform samples in the axis-aligned bounding box (float64 so the distance test below and
    # the caller's checks agree to the last bit before the final float32 cast).
    u = torch.rand(cfg.growth_samples, 3, generator=generator, dtype=torch.float64)
    samples = lo + u * (hi - lo)  # [S, 3]

    tree = cKDTree(v.numpy())
    samples_np = samples.numpy()
    keep = np.zeros(cfg.growth_samples, dtype=bool)
    nearest = np.zeros(cfg.growth_samples, dtype=np.int64)
    for start in range(0, cfg.growth_samples, _QUERY_CHUNK):
        chunk = samples_np[start:start + _QUERY_CHUNK]
        # distance_upper_bound only prunes the search; the strict "<" test below is the rule.
        dist, idx = tree.query(chunk, k=1, distance_upper_bound=cfg.growth_radius)
        ok = dist < cfg.growth_radius
        keep[start:start + len(chunk)] = ok
        nearest[start:start + len(chunk)][ok] = idx[ok]

    keep_t = torch.from_numpy(keep)
    kept = samples[keep_t]  # [K, 3]
    kept_idx = torch.from_numpy(nearest[keep])
    jitter = torch.rand(kept.shape[0], 3, generator=generator, dtype=torch.float64)
    kept_colors = c[kept_idx] + cfg.color_jitter * jitter  # [K, 3], may exceed 1

    points = torch.cat([kept, v], dim=0) * cfg.bound  # [M, 3]
    out_colors = torch.cat([kept_colors, c], dim=0)  # [M, 3]
    return points.float(), out_colors.float()


def knn_scales(points: Tensor, cfg: InitConfig) -> Tensor:
    """Isotropic std per point: sqrt(mean squared distance to the k nearest other points).

    points  [N, 3]
    returns [N]  with the mean squared distance clamped below at cfg.min_scale_sq (distCUDA2).
    With fewer than k + 1 points the available neighbours are used; a single point gets the
    clamp value.
    """
    n = points.shape[0]
    k = min(cfg.knn_neighbours, n - 1)
    if k <= 0:
        return torch.full((n,), float(np.sqrt(cfg.min_scale_sq)))
    tree = cKDTree(points.detach().cpu().double().numpy())
    # k + 1 because the nearest hit of a point is itself (distance 0), which distCUDA2 excludes.
    dist, _ = tree.query(points.detach().cpu().double().numpy(), k=k + 1)
    mean_sq = np.mean(dist[:, 1:] ** 2, axis=1)
    mean_sq = np.maximum(mean_sq, cfg.min_scale_sq)
    return torch.from_numpy(np.sqrt(mean_sq)).float()


def gaussians_from_points(points: Tensor, colors: Tensor, cfg: InitConfig) -> Gaussians:
    """points [N, 3], colors [N, 3] -> isotropic Gaussians, identity rotation, opacity cfg.opacity."""
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"points must be a non-empty [N, 3] tensor, got shape {tuple(points.shape)}")
    if colors.shape != points.shape:
        raise ValueError(f"colors {tuple(colors.shape)} must match points {tuple(points.shape)}")
    scales = knn_scales(points, cfg)
    return Gaussians.from_points(points.detach().cpu().float(), colors.detach().cpu().float(), scales,
                                 opacity=cfg.opacity, sh_degree=cfg.sh_degree)


def init_ball(cfg: InitConfig, generator: torch.Generator) -> Gaussians:
    """cfg.ball_points Gaussians uniform in a ball of radius cfg.ball_radius, random colours."""
    n = cfg.ball_points
    direction = torch.randn(n, 3, generator=generator)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    # the cube root makes the density uniform in volume (P(r < R) = (R / radius)^3)
    radius = cfg.ball_radius * torch.rand(n, 1, generator=generator) ** (1.0 / 3.0)
    points = direction * radius  # [N, 3]
    colors = torch.rand(n, 3, generator=generator)  # [N, 3]
    return gaussians_from_points(points, colors, cfg)
