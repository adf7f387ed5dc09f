"""Evaluation camera protocols as our `Cameras` (world z up, front +x: T3Bench's frame too).

    cams, point, fov = quality_cameras(cfg.quality)   # 162 points x 5 fovs = 810 views
    cams = alignment_cameras(cfg.alignment_views)          # 12 views at distance 4.84
    cams = clip_cameras(cfg.clip)                     # 8 views around the object

T3Bench renders the exported *mesh* with pyrender; we render the 3D Gaussians directly from the
same cameras. Every camera looks at the origin. The look-at follows render/meshrender.py
exactly: the up hint is world z, or world y when the view direction is within
acos(up_switch_cos) (about 8 degrees) of the z axis (the two poles of the icosphere).
Views of one point are consecutive: view index = point * F + fov index.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generators.cameras import Cameras, orbit_cameras
from metrics.config import AlignmentViewsConfig, ClipConfig, QualityConfig
from metrics.icosphere import icosphere


def look_at_origin(points: Tensor, up_switch_cos: float) -> Tensor:
    """OpenGL camera-to-world [C, 4, 4] for cameras at `points` [C, 3] looking at the origin.

    Camera axes as in meshrender.py: z_cam = p / |p| (the camera looks down -z_cam),
    x_cam = normalize(up x p), y_cam = z_cam x x_cam; up = z, or y near the poles.
    """
    points = points.to(torch.float64)
    back = points / points.norm(dim=-1, keepdim=True)  # z_cam
    z_up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(back)
    y_up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(back)
    near_pole = (back @ z_up[0]).abs() >= up_switch_cos
    up = torch.where(near_pole[:, None], y_up, z_up)
    right = torch.linalg.cross(up, back, dim=-1)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.linalg.cross(back, right, dim=-1)
    c2w = torch.zeros(points.shape[0], 4, 4, dtype=torch.float64)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = true_up
    c2w[:, :3, 2] = back
    c2w[:, :3, 3] = points
    c2w[:, 3, 3] = 1.0
    return c2w


def cameras_at_points(points: Tensor, fov_y_deg: Tensor, width: int, height: int, up_switch_cos: float) -> Cameras:
    """Cameras at `points` [C, 3] with vertical fields of view `fov_y_deg` [C], looking at 0."""
    points = points.to(torch.float64)
    distance = points.norm(dim=-1)
    elevation = torch.rad2deg(torch.asin((points[:, 2] / distance).clamp(-1.0, 1.0)))
    # atan2(0, 0) = 0: the poles get azimuth 0 (any value is right there)
    azimuth = torch.rad2deg(torch.atan2(points[:, 1], points[:, 0]))
    c2w = look_at_origin(points, up_switch_cos)
    return Cameras(
        c2w=c2w.float(), fov_y=torch.deg2rad(fov_y_deg.to(torch.float64)).float(), width=width, height=height,
        elevation_deg=elevation.float(), azimuth_deg=azimuth.float(), distance=distance.float(),
    )


def quality_cameras(cfg: QualityConfig) -> tuple[Cameras, Tensor, Tensor]:
    """The V x F quality views -> (cameras [V*F], point index [V*F], fov index [V*F])."""
    ico = icosphere(cfg.icosphere_subdivisions, cfg.radius)
    n_points, n_fov = len(ico), len(cfg.fov_y_deg)
    point = torch.arange(n_points).repeat_interleave(n_fov)
    fov = torch.arange(n_fov).repeat(n_points)
    fovs = torch.tensor(cfg.fov_y_deg, dtype=torch.float64)[fov]
    cams = cameras_at_points(ico.vertices[point], fovs, cfg.width, cfg.height, cfg.up_switch_cos)
    return cams, point, fov


def alignment_cameras(cfg: AlignmentViewsConfig) -> Cameras:
    """The 12 caption views at distance radius * radius_factor (4.84 as in T3Bench)."""
    ico = icosphere(cfg.icosphere_subdivisions, cfg.radius)
    points = ico.vertices * cfg.radius_factor
    fovs = torch.full((len(ico),), cfg.fov_y_deg, dtype=torch.float64)
    return cameras_at_points(points, fovs, cfg.width, cfg.height, cfg.up_switch_cos)


def clip_cameras(cfg: ClipConfig) -> Cameras:
    """`num_views` evenly spaced azimuths (from the front, +x) at a fixed elevation."""
    orbit = orbit_cameras(cfg.num_views, cfg.elevation_deg, cfg.radius, cfg.fov_y_deg, cfg.width, cfg.height,
                          start_azimuth_deg=cfg.start_azimuth_deg)
    # same look-at rule as the T3Bench protocols (identical to orbit's away from the poles)
    fovs = torch.full((cfg.num_views,), cfg.fov_y_deg, dtype=torch.float64)
    return cameras_at_points(orbit.positions.to(torch.float64), fovs, cfg.width, cfg.height, cfg.up_switch_cos)



@torch.no_grad()
def iter_views(gaussians, cameras: Cameras, render_cfg, background: tuple[float, float, float], batch: int):
    """Yield (first view index, uint8 [c, H, W, 3]) chunks of at most `batch` views.

    Quantised to 8 bits like the PNGs T3Bench writes and scores. `gaussians` should already be
    in the evaluation frame (metrics.normalize); a generators.mesh Mesh there is drawn by
    metrics.mesh_render (T3Bench's mesh renderer) from the same cameras.
    """
    from generators.mesh.mesh import Mesh
    from generators.render import render

    if isinstance(gaussians, Mesh):  # the exported-mesh path: T3Bench's mesh renderer (metrics.mesh_render)
        from metrics.mesh_render import iter_mesh_views

        yield from iter_mesh_views(gaussians, cameras, background, batch)
        return
    batch = max(1, int(batch))
    bg = torch.tensor(background, dtype=torch.float32, device=gaussians.device)
    for start in range(0, len(cameras), batch):
        index = list(range(start, min(len(cameras), start + batch)))
        rgb = render(gaussians, cameras.subset(index), render_cfg, bg).rgb  # [c, H, W, 3]
        yield start, (rgb.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def render_views(gaussians, cameras: Cameras, render_cfg, background: tuple[float, float, float],
                 batch: int):
    """Every view at once: uint8 [C, H, W, 3] (for the small protocols)."""
    import numpy as np

    chunks = [images for _, images in iter_views(gaussians, cameras, render_cfg, background, batch)]
    return np.concatenate(chunks) if chunks else np.zeros((0, cameras.height, cameras.width, 3), np.uint8)
