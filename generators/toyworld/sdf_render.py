"""Batched sphere tracing of ToyWorld scenes in torch: signed distance functions, Lambert shading.

    images = render_scenes(batch, cameras, cfg)   # [B, H, W, 3] in [0, 1]

Cameras are the project's `generators.cameras.Cameras` (OpenGL c2w, z-up world), so a ToyWorld
image and a Gaussian render from the same camera show the same view. Rays are traced at
`supersample` x the camera resolution and box-averaged down. Rays that miss the sphere around
the scene are background at once; the rest march together, and finished rays leave the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.cameras import Cameras
from generators.toyworld.config import COLOURS, SHAPES, ShapeGeometry, WorldConfig
from generators.toyworld.world import SceneBatch

_FAR = 1e6  # distance reported by an empty object slot


# ----------------------------------------------------------------------------------------------
# Object-local signed distances, p: [n, 3] (z up, centre at the origin, scale 1) -> [n]


def sdf_sphere(p: Tensor, geo: ShapeGeometry) -> Tensor:
    return p.norm(dim=-1) - geo.sphere_radius


def sdf_cube(p: Tensor, geo: ShapeGeometry) -> Tensor:
    r = geo.cube_rounding
    q = p.abs() - (geo.cube_half_extent - r)
    outside = q.clamp_min(0.0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp_max(0.0)
    return outside + inside - r


def sdf_cone(p: Tensor, geo: ShapeGeometry) -> Tensor:
    """Exact distance to a solid cone, base radius r at z = -h, apex at z = +h."""
    h, r = geo.cone_half_height, geo.cone_radius
    qx = p[:, :2].norm(dim=-1)
    qy = p[:, 2]
    # distance to the base disc's rim region (cap) ...
    cap_r = torch.where(qy < 0, torch.full_like(qx, r), torch.zeros_like(qx))
    ca_x = qx - torch.minimum(qx, cap_r)
    ca_y = qy.abs() - h
    # ... and to the slanted side, a segment from (0, h) to (r, -h)
    k2x, k2y = -r, 2.0 * h
    t = (((0.0 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y)).clamp(0.0, 1.0)
    cb_x = qx - 0.0 + k2x * t
    cb_y = qy - h + k2y * t
    sign = torch.where((cb_x < 0) & (ca_y < 0), -1.0, 1.0)
    return sign * torch.sqrt(torch.minimum(ca_x * ca_x + ca_y * ca_y, cb_x * cb_x + cb_y * cb_y))


def sdf_torus(p: Tensor, geo: ShapeGeometry) -> Tensor:
    """A ring about the local z axis after tilting it about x by `torus_tilt_deg`."""
    a = math.radians(geo.torus_tilt_deg)
    c, s = math.cos(a), math.sin(a)
    y = c * p[:, 1] + s * p[:, 2]
    z = -s * p[:, 1] + c * p[:, 2]
    ring = torch.sqrt(p[:, 0] ** 2 + y**2) - geo.torus_major
    return torch.sqrt(ring**2 + z**2) - geo.torus_minor


SDFS = {"cube": sdf_cube, "sphere": sdf_sphere, "cone": sdf_cone, "torus": sdf_torus}
assert tuple(SDFS) == SHAPES


# ----------------------------------------------------------------------------------------------
# Scene distance


def scene_sdf(p: Tensor, image: Tensor, batch: SceneBatch, geo: ShapeGeometry) -> tuple[Tensor, Tensor]:
    """World distance of points `p` [n, 3] belonging to images `image` [n] -> (dist [n], object slot [n])."""
    sid = batch.shape_id[image]  # [n, K]
    rel = p[:, None, :] - batch.centre[image]  # [n, K, 3]
    yaw = batch.yaw[image]
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    # world -> object frame: undo the yaw about z, then the scale
    local = torch.stack([cos * rel[..., 0] + sin * rel[..., 1], -sin * rel[..., 0] + cos * rel[..., 1], rel[..., 2]], -1)
    scale = batch.scale[image]
    local = local / scale.clamp_min(1e-6)[..., None]
    dist = torch.full(sid.shape, _FAR, dtype=p.dtype, device=p.device)
    for s, name in enumerate(SHAPES):
        mask = sid == s
        if mask.any():
            dist[mask] = SDFS[name](local[mask], geo) * scale[mask]
    best, slot = dist.min(dim=1)
    return best, slot


# ----------------------------------------------------------------------------------------------
# Rays and tracing


def camera_rays(cameras: Cameras, supersample: int) -> tuple[Tensor, Tensor]:
    """Ray origins and unit directions, both [C, H*s, W*s, 3], through sub-pixel centres."""
    h, w = cameras.height * supersample, cameras.width * supersample
    focal = 0.5 * h / torch.tan(0.5 * cameras.fov_y)  # [C]
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                          indexing="ij")
    # OpenGL camera: x right, y up, looking down -z
    x = (u - 0.5 * w)[None] / focal[:, None, None]
    y = -(v - 0.5 * h)[None] / focal[:, None, None]
    d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # [C, h, w, 3]
    rot = cameras.c2w[:, :3, :3].float()
    d_world = torch.einsum("cij,chwj->chwi", rot, d_cam)
    d_world = d_world / d_world.norm(dim=-1, keepdim=True)
    origin = cameras.c2w[:, None, None, :3, 3].float().expand_as(d_world)
    return origin, d_world


def trace(origin: Tensor, direction: Tensor, image: Tensor, batch: SceneBatch, cfg: WorldConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Sphere-trace rays [n, 3] -> (hit [n] bool, t [n], object slot [n])."""
    tc = cfg.tracer
    n = origin.shape[0]
    b = (origin * direction).sum(-1)
    c = (origin * origin).sum(-1) - tc.scene_radius**2
    disc = b * b - c
    t = torch.zeros(n)
    t_exit = torch.zeros(n)
    last = torch.full((n,), _FAR)
    slot = torch.zeros(n, dtype=torch.long)
    alive = torch.nonzero(disc > 0).squeeze(1)
    root = torch.sqrt(disc[alive])
    t[alive] = (-b[alive] - root).clamp_min(0.0)
    t_exit[alive] = -b[alive] + root
    for _ in range(tc.march_steps):
        if alive.numel() == 0:
            break
        p = origin[alive] + t[alive, None] * direction[alive]
        d, s = scene_sdf(p, image[alive], batch, cfg.geometry)
        last[alive] = d
        slot[alive] = s
        t_new = t[alive] + d
        t[alive] = t_new
        keep = (d >= tc.hit_epsilon) & (t_new <= t_exit[alive])
        alive = alive[keep]
    hit = (last < tc.accept_epsilon) & (t <= t_exit) & (disc > 0)
    return hit, t, slot


def scene_normals(p: Tensor, image: Tensor, batch: SceneBatch, cfg: WorldConfig) -> Tensor:
    """Unit SDF gradients [n, 3] by the four-point tetrahedral difference."""
    h = cfg.tracer.normal_delta
    taps = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
    grad = torch.zeros_like(p)
    for e in taps:
        d, _ = scene_sdf(p + h * e, image, batch, cfg.geometry)
        grad = grad + d[:, None] * e
    return grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def colour_table(cfg: WorldConfig) -> Tensor:  # [len(COLOURS), 3]
    return torch.tensor([cfg.shading.colours_rgb[c] for c in COLOURS])


@torch.no_grad()
def render_scenes(batch: SceneBatch, cameras: Cameras, cfg: WorldConfig) -> Tensor:
    """Render scene i from camera i. Returns [B, H, W, 3] in [0, 1] (H, W from the cameras)."""
    if len(batch) != len(cameras):
        raise ValueError(f"{len(batch)} scenes but {len(cameras)} cameras")
    ss = cfg.tracer.supersample
    sh = cfg.shading
    origin, direction = camera_rays(cameras, ss)  # [B, h, w, 3]
    bsz, h, w, _ = origin.shape
    image = torch.arange(bsz)[:, None, None].expand(bsz, h, w).reshape(-1)
    origin, direction = origin.reshape(-1, 3), direction.reshape(-1, 3)
    hit, t, slot = trace(origin, direction, image, batch, cfg)

    rgb = torch.full((origin.shape[0], 3), sh.background)
    idx = torch.nonzero(hit).squeeze(1)
    if idx.numel():
        p = origin[idx] + t[idx, None] * direction[idx]
        normal = scene_normals(p, image[idx], batch, cfg)
        light = torch.tensor(sh.world_light_dir, dtype=torch.float32)
        light = light / light.norm()
        lambert_world = (normal @ light).clamp_min(0.0)
        lambert_head = (-(normal * direction[idx]).sum(-1)).clamp_min(0.0)
        albedo = colour_table(cfg)[batch.colour_id[image[idx], slot[idx]]]
        shade = sh.ambient + sh.world_light * lambert_world + sh.head_light * lambert_head
        rgb[idx] = (albedo * shade[:, None]).clamp(0.0, 1.0)
    rgb = rgb.reshape(bsz, h, w, 3)
    if ss > 1:
        rgb = F.avg_pool2d(rgb.permute(0, 3, 1, 2), ss).permute(0, 2, 3, 1)
    return rgb.contiguous()
