"""T3Bench's mesh renderer, re-done as a small torch rasteriser that runs headless on the CPU.

T3Bench (render/meshrender.py, meshrender_cap.py) draws each exported mesh with pyrender under
OSMesa: `Mesh.from_trimesh(smooth=False)` with base colour factor 1, ambient light 1, no lights,
`RenderFlags.FLAT`, black background, `PerspectiveCamera(yfov)` (aspect = width / height, znear
0.05, no far plane), 512 x 512. FLAT and no lights mean every pixel shows the surface's own colour
(its texture, else white); the nearest surface wins. This module does exactly that for our Mesh:

    for start, images in iter_mesh_views(mesh, cameras, background, batch): ...   # uint8 [c, H, W, 3]

- projection: OpenGL, x_ndc = f / aspect * x / -z, y_ndc = f * y / -z with f = 1 / tan(yfov / 2);
  pixel centres at half-integers, row 0 at the top (as the PNGs pyrender writes);
- visibility: a depth test on 1 / depth (linear in screen space), every face drawn from both sides;
  a closed surface looks the same with or without back-face culling;
- colour: perspective-correct interpolation of the texture coordinates (sampled bilinearly, OBJ
  v up) or of the vertex colours, unlit;
- no multisampling (one sample per pixel centre).
The cameras are metrics.cameras' (T3Bench's look-at), so the Gaussian and the mesh paths look at
a run from the same places. The mesh must already be in T3Bench's frame (metrics.normalize.normalize_mesh).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from generators.cameras import Cameras
from generators.mesh.mesh import Mesh

ZNEAR = 0.05  # pyrender PerspectiveCamera default
PAIR_CHUNK = 4_000_000  # (face, pixel) candidates tested at once: memory only


def project(vertices: Tensor, c2w: Tensor, fov_y: float, width: int, height: int) -> tuple[Tensor, Tensor]:
    """World vertices [V, 3] -> (pixel coordinates [V, 2] (x right, y down), inverse depth [V])."""
    w2c = torch.linalg.inv(c2w.double())
    cam = vertices.double() @ w2c[:3, :3].T + w2c[:3, 3]  # [V, 3], camera looks down -z
    depth = -cam[:, 2]
    f = 1.0 / math.tan(fov_y / 2.0)
    aspect = width / height
    x_ndc = f / aspect * cam[:, 0] / depth
    y_ndc = f * cam[:, 1] / depth
    px = torch.stack([(x_ndc + 1.0) * 0.5 * width, (1.0 - y_ndc) * 0.5 * height], dim=-1)
    return px, 1.0 / depth


def rasterize(mesh: Mesh, c2w: Tensor, fov_y: float, width: int, height: int) -> tuple[Tensor, Tensor]:
    """-> (face index [H, W] (-1 = background), perspective-correct barycentrics [H, W, 3])."""
    px, inv_depth = project(mesh.vertices, c2w, fov_y, width, height)
    faces = mesh.faces
    valid = (inv_depth[faces] > 0).all(1) & (1.0 / inv_depth[faces] >= ZNEAR).all(1)  # in front of the near plane
    tri = px[faces]  # [F, 3, 2]
    x0 = torch.ceil(tri[..., 0].min(1).values - 0.5).clamp(0, width).long()
    x1 = torch.floor(tri[..., 0].max(1).values - 0.5).clamp(-1, width - 1).long()
    y0 = torch.ceil(tri[..., 1].min(1).values - 0.5).clamp(0, height).long()
    y1 = torch.floor(tri[..., 1].max(1).values - 0.5).clamp(-1, height - 1).long()
    bw, bh = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # twice the signed area [F]
    count = torch.where(valid & (area.abs() > 1e-12), bw * bh, 0)
    zbuf = torch.full((height * width,), -math.inf, dtype=torch.float64)
    face_id = torch.full((height * width,), -1, dtype=torch.long)
    bary = torch.zeros(height * width, 3, dtype=torch.float64)
    ids = torch.nonzero(count).flatten()
    if len(ids) == 0:
        return face_id.view(height, width), bary.view(height, width, 3).float()
    # split the faces so that each chunk tests at most PAIR_CHUNK (face, pixel) pairs
    cum = torch.cumsum(count[ids], 0)
    bounds = torch.searchsorted(cum, torch.arange(PAIR_CHUNK, int(cum[-1]) + PAIR_CHUNK, PAIR_CHUNK, dtype=cum.dtype))
    start = 0
    for stop in sorted(set(int(b) + 1 for b in bounds.tolist())):
        chunk = ids[start:min(stop, len(ids))]
        start = min(stop, len(ids))
        if len(chunk) == 0:
            continue
        n = count[chunk]
        f = torch.repeat_interleave(chunk, n)  # [T]
        first = torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        local = torch.arange(len(f)) - first
        x = x0[f] + local % bw[f]
        y = y0[f] + torch.div(local, bw[f], rounding_mode="floor")
        p = torch.stack([x, y], -1).double() + 0.5  # pixel centres [T, 2]
        t = tri[f]  # [T, 3, 2]
        d = p - t[:, 0]
        a = area[f]
        b1 = (d[:, 0] * e2[f, 1] - d[:, 1] * e2[f, 0]) / a
        b2 = (e1[f, 0] * d[:, 1] - e1[f, 1] * d[:, 0]) / a
        b = torch.stack([1.0 - b1 - b2, b1, b2], -1)  # screen-space barycentrics [T, 3]
        inside = (b >= -1e-9).all(-1)
        f, b, x, y = f[inside], b[inside], x[inside], y[inside]
        iw = inv_depth[faces[f]]  # [T, 3]
        z = (b * iw).sum(-1)  # inverse depth, linear in screen space: larger = nearer
        pix = y * width + x
        zbuf.scatter_reduce_(0, pix, z, reduce="amax", include_self=True)
        win = z >= zbuf[pix]
        pc = b[win] * iw[win]
        face_id[pix[win]] = f[win]
        bary[pix[win]] = pc / pc.sum(-1, keepdim=True)
    return face_id.view(height, width), bary.view(height, width, 3).float()


def shade(mesh: Mesh, face_id: Tensor, bary: Tensor, background: tuple[float, float, float]) -> Tensor:
    """Unlit colours [H, W, 3] in [0, 1]: texture, else vertex colours, else white; background where no face."""
    h, w = face_id.shape
    out = torch.tensor(background, dtype=torch.float32).expand(h, w, 3).clone()
    hit = face_id >= 0
    f, b = face_id[hit], bary[hit]  # [P], [P, 3]
    if mesh.texture is not None:
        uv = (b[..., None] * mesh.uv[f]).sum(1)  # [P, 2]
        grid = torch.stack([uv[:, 0] * 2 - 1, (1 - uv[:, 1]) * 2 - 1], -1).view(1, -1, 1, 2)
        tex = mesh.texture.permute(2, 0, 1)[None].float()
        rgb = torch.nn.functional.grid_sample(tex, grid, mode="bilinear", padding_mode="border",
                                              align_corners=False)[0, :, :, 0].T
    elif mesh.vertex_colors is not None:
        rgb = (b[..., None] * mesh.vertex_colors[mesh.faces[f]]).sum(1)
    else:
        rgb = torch.ones(len(f), 3)
    out[hit] = rgb.clamp(0, 1)
    return out


@torch.no_grad()
def render_mesh(mesh: Mesh, cameras: Cameras, index: int, background: tuple[float, float, float]) -> Tensor:
    """One view [H, W, 3] float in [0, 1]."""
    face_id, bary = rasterize(mesh, cameras.c2w[index], float(cameras.fov_y[index]), cameras.width, cameras.height)
    return shade(mesh, face_id, bary, background)


def iter_mesh_views(mesh: Mesh, cameras: Cameras, background: tuple[float, float, float],
                    batch: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first view index, uint8 [c, H, W, 3]) chunks of at most `batch` views, as metrics.cameras.iter_views."""
    mesh = mesh.to("cpu")
    batch = max(1, int(batch))
    for start in range(0, len(cameras), batch):
        views = [render_mesh(mesh, cameras, i, background) for i in range(start, min(len(cameras), start + batch))]
        yield start, (torch.stack(views).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
