"""A coloured triangle mesh from 3D Gaussians: density grid, marching cubes, vertex colours.

    mesh = extract_mesh(gaussians, MeshExportConfig(resolution=256))

1. Density on a cubic grid around the object: d(x) = sum_i o_i exp(-1/2 (x - mu_i)^T S_i^-1 (x - mu_i)),
   each Gaussian added only within `cutoff_sigmas` of its centre (at most `max_radius_voxels` voxels),
   the sum DreamGaussian thresholds for its mesh export. The grid spans the object's Gaussians
   (quantiles `bounds_quantile` of their centres, so a few far floaters do not shrink the resolution)
   plus `margin_sigmas` of their typical size, with `resolution` points along its longest side.
2. Marching cubes (PyMCubes) at `threshold`.
3. Vertex colour = the density-weighted mean of the Gaussians' base colours (SH degree 0, view
   independent) at the vertex: a colour grid sum_i w_i(x) c_i divided by the density, read trilinearly.

threestudio (and T3Bench's export) use resolution 256 with marching cubes on the CPU and then
unwrap a 1024 px texture with xatlas and decimate to 40,000 triangles; here colours stay on the
vertices and the mesh is not decimated (see docs/t3bench.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from generators.errors import UserError
from generators.gaussians.model import SH_C0, Gaussians, quat_to_rotmat
from generators.mesh.mesh import Mesh


@dataclass
class MeshExportConfig:
    """How a run's Gaussians become a mesh (recorded with every mesh-path score)."""

    resolution: int = 256  # grid points along the longest side (threestudio / T3Bench: 256)
    threshold: float = 1.0  # iso-level of the summed opacity-weighted density (DreamGaussian's density_thresh)
    cutoff_sigmas: float = 3.0  # a Gaussian adds density within this Mahalanobis radius
    max_radius_voxels: int = 16  # and within this many voxels of its centre (caps huge Gaussians' cost)
    bounds_quantile: float = 0.001  # grid bounds from these quantiles of the centres (floaters ignored)
    margin_sigmas: float = 3.0  # grid margin in units of the median Gaussian size
    chunk_elements: int = 4_000_000  # (Gaussian, grid point) pairs evaluated at once: memory, not numbers


def _grid_frame(means: Tensor, sigma: Tensor, cfg: MeshExportConfig) -> tuple[Tensor, float]:
    """(origin [3], voxel size) of a cubic grid with cfg.resolution points along its longest side."""
    q = cfg.bounds_quantile
    lo = torch.quantile(means, q, dim=0) if q > 0 else means.min(0).values
    hi = torch.quantile(means, 1 - q, dim=0) if q > 0 else means.max(0).values
    margin = cfg.margin_sigmas * float(sigma.median())
    lo, hi = lo - margin, hi + margin
    side = float((hi - lo).max())
    if not side > 0:
        raise UserError("mesh export: the Gaussians have no extent")
    voxel = side / (cfg.resolution - 1)
    centre = (lo + hi) / 2
    return centre - voxel * (cfg.resolution - 1) / 2, voxel


def density_grids(gaussians: Gaussians, cfg: MeshExportConfig) -> tuple[Tensor, Tensor, Tensor, float]:
    """-> (density [R, R, R], weighted colour sum [R, R, R, 3], origin [3], voxel). Axis order x, y, z."""
    if cfg.resolution < 8:
        raise UserError(f"mesh export: resolution must be at least 8, got {cfg.resolution}")
    with torch.no_grad():
        means = gaussians.means.detach().double().cpu()  # [N, 3]
        if means.shape[0] == 0 or not torch.isfinite(means).all():
            raise UserError("mesh export: no Gaussians, or positions with NaN / infinity")
        std = gaussians.scales_act.detach().double().cpu().clamp_min(1e-12)  # [N, 3]
        rot = quat_to_rotmat(gaussians.quats_normalized.detach().double().cpu())  # [N, 3, 3]
        inv_cov = (rot @ torch.diag_embed(std ** -2) @ rot.transpose(-1, -2)).float()  # R S^-2 R^T  [N, 3, 3]
        opacity = gaussians.opacities_act.detach().float().cpu()  # [N]
        color = (SH_C0 * gaussians.params["sh0"].detach().float().cpu()[:, 0, :] + 0.5).clamp(0, 1)  # [N, 3]
    sigma = std.max(dim=1).values  # [N]
    origin, voxel = _grid_frame(means, sigma, cfg)
    res = cfg.resolution
    density = torch.zeros(res ** 3)
    colour = torch.zeros(res ** 3, 3)
    centre = torch.round((means - origin) / voxel).long()  # nearest grid point [N, 3]
    # the Gaussian's centre relative to its nearest grid point, in voxels (float32 from here on)
    frac = ((means - origin) / voxel - centre).float()  # [N, 3]
    radius = torch.ceil(cfg.cutoff_sigmas * sigma / voxel).long().clamp(1, cfg.max_radius_voxels)  # [N]
    inv_cov_vox = inv_cov * voxel ** 2  # Mahalanobis in voxel units
    for r in torch.unique(radius).tolist():
        idx = torch.nonzero(radius == r).flatten()
        ax = torch.arange(-r, r + 1)
        offsets = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)  # [K, 3]
        per_chunk = max(1, cfg.chunk_elements // len(offsets))
        for part in idx.split(per_chunk):
            cells = centre[part, None, :] + offsets[None]  # [n, K, 3]
            inside = ((cells >= 0) & (cells < res)).all(-1)  # [n, K]
            d = offsets[None].float() - frac[part, None, :]  # grid point - centre, in voxels [n, K, 3]
            m = (torch.bmm(d, inv_cov_vox[part]) * d).sum(-1)  # squared Mahalanobis [n, K]
            # pairs outside the grid or past the cutoff add zero (cheaper than gathering the rest)
            w = opacity[part, None] * torch.exp(-0.5 * m) * (inside & (m <= cfg.cutoff_sigmas ** 2))  # [n, K]
            flat = torch.where(inside, (cells[..., 0] * res + cells[..., 1]) * res + cells[..., 2], 0).view(-1)
            density.index_add_(0, flat, w.view(-1))
            colour.index_add_(0, flat, (w[..., None] * color[part, None, :]).view(-1, 3))
    return density.view(res, res, res), colour.view(res, res, res, 3), origin, voxel


def _trilinear(grid: Tensor, points: Tensor) -> Tensor:
    """grid [R, R, R, C] (axes x, y, z) at fractional grid coordinates points [M, 3] -> [M, C]."""
    res = grid.shape[0]
    vol = grid.permute(3, 0, 1, 2)[None].float()  # [1, C, X(D), Y(H), Z(W)]
    g = (points.float() / (res - 1)) * 2 - 1  # grid_sample wants (W, H, D) = (z, y, x)
    out = torch.nn.functional.grid_sample(vol, g[:, [2, 1, 0]].view(1, -1, 1, 1, 3), mode="bilinear",
                                          padding_mode="border", align_corners=True)
    return out.view(grid.shape[-1], -1).T


def extract_mesh(gaussians: Gaussians, cfg: MeshExportConfig = MeshExportConfig()) -> Mesh:
    """The coloured iso-surface of the Gaussians' density (see the module docstring), in their frame."""
    import mcubes

    density, colour, origin, voxel = density_grids(gaussians, cfg)
    peak = float(density.max())
    if not peak > cfg.threshold:
        raise UserError(f"mesh export: the density never reaches the threshold {cfg.threshold} (peak {peak:.3g}); "
                        f"lower mesh.threshold")
    verts, faces = mcubes.marching_cubes(density.numpy(), cfg.threshold)  # grid coordinates, x y z
    if len(faces) == 0:
        raise UserError("mesh export: marching cubes found no surface")
    grid_pts = torch.from_numpy(np.ascontiguousarray(verts))  # [V, 3]
    weighted = _trilinear(colour, grid_pts)  # [V, 3]
    dens = _trilinear(density[..., None], grid_pts).clamp_min(1e-12)  # [V, 1]
    rgb = (weighted / dens).clamp(0, 1).float()
    vertices = (origin + grid_pts * voxel).float()
    return Mesh(vertices, torch.from_numpy(faces.astype(np.int64)), rgb)


def mesh_stats(mesh: Mesh) -> dict:
    """Counts and bounds of a mesh, for records."""
    v = mesh.vertices
    return {"vertices": int(v.shape[0]), "faces": int(mesh.faces.shape[0]),
            "bounds": [[float(x) for x in v.min(0).values], [float(x) for x in v.max(0).values]]}


__all__ = ["MeshExportConfig", "extract_mesh", "density_grids", "mesh_stats"]
