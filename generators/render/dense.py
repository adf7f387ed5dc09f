"""Dense CPU rasterizer: gsplat 1.5.3's compositing rules in plain, differentiable PyTorch.

Per pixel (centre at (x + 0.5, y + 0.5)), front to back over the Gaussians sorted by depth:

    alpha_i = min(0.999, o_i exp(-0.5 d^T conic_i d)),  skipped when < 1/255
    T_i     = prod_{j < i} (1 - alpha_j),  stop before the Gaussian that would take T to <= 1e-4
    rgb     = sum_i alpha_i T_i c_i + T_final bg,   alpha = 1 - T_final,
    depth   = sum_i alpha_i T_i z_i / alpha  (0 where alpha is 0)

To stay fast on a CPU without changing a single pixel it works on square tiles: a Gaussian is
tested only against tiles its screen box (`Projected.radii`) overlaps. Outside that box its alpha
is below 1/255 (see projection.py), so it would have been skipped anyway. Each chunk of tiles
becomes one dense [tiles, pixels, Gaussians] block; the tile size changes speed, never the image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from generators.cameras import Cameras
from generators.config import RenderConfig
from generators.gaussians import Gaussians
from generators.render.projection import ALPHA_THRESHOLD, Projected, project_gaussians, sh_colors
from generators.render.types import RenderOutput

ALPHA_MAX = 0.999  # gsplat clamps per-Gaussian alpha here so 1 - alpha never reaches 0
TRANSMITTANCE_STOP = 1e-4  # gsplat stops a pixel before the Gaussian that takes T to <= this
# Tile edge in pixels: a speed knob only. Small tiles cull tightly around the few-pixel Gaussians
# of 64-128 px training renders (4 beat 8 and 16 in tests/perf/bench_render.py); the result does
# not depend on it (tested).
TILE_SIZE = 4
# Length of the pieces a tile's Gaussian list is cut into (a speed/memory knob, no effect on the image).
SEGMENT_LENGTH = 64
_LOG_TRANSMITTANCE_STOP = math.log(TRANSMITTANCE_STOP)


def render_dense(
    gaussians: Gaussians, cameras: Cameras, cfg: RenderConfig, background: Tensor, tile_size: int = TILE_SIZE
) -> RenderOutput:
    """Render every camera of `cameras`; background [3]. Differentiable w.r.t. all Gaussian parameters.

    Works in the Gaussians' dtype (float64 for gradient checks).
    """
    width, height = cameras.width, cameras.height
    dtype = gaussians.means.dtype
    viewmats = cameras.viewmats.to(dtype)
    proj = project_gaussians(
        gaussians.means, gaussians.quats_normalized, gaussians.scales_act, gaussians.opacities_act,
        viewmats, cameras.Ks.to(dtype), width, height, cameras.near, cameras.far, cfg.eps2d,
        antialiased=cfg.rasterize_mode == "antialiased",
    )
    if proj.means2d.requires_grad:
        proj.means2d.retain_grad()  # densification reads means2d.grad
    campos = cameras.positions.to(dtype)  # [C, 3]
    colors = sh_colors(gaussians.sh_coeffs, gaussians.sh_degree, gaussians.means, campos)  # [C, N, 3]
    features = torch.cat([colors, proj.depths[..., None]], dim=-1)  # [C, N, 4]: rgb + z

    accum, alpha = rasterize_tiles(proj, features, width, height, cfg.dense_chunk_pixels, tile_size)
    background = background.to(dtype)
    rgb = accum[..., :3] + (1.0 - alpha) * background
    depth = accum[..., 3:] / alpha.clamp_min(1e-10)  # gsplat's "ED" normalisation; 0 where alpha = 0
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, means2d=proj.means2d, radii=proj.radii.amax(dim=-1))


def rasterize_tiles(
    proj: Projected, features: Tensor, width: int, height: int, chunk_pixels: int, tile_size: int = TILE_SIZE
) -> tuple[Tensor, Tensor]:
    """Composite `features` [C, N, D] -> accumulated features [C, H, W, D] (no background) and alpha [C, H, W, 1]."""
    C, N, D = features.shape
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles = C * tiles_x * tiles_y
    pix = tile_size * tile_size
    dtype, device = features.dtype, features.device

    flat_ids, tile_start, tile_count = _tile_lists(proj, tile_size, tiles_x, tiles_y)
    means2d = proj.means2d.reshape(C * N, 2)
    conics = proj.conics.reshape(C * N, 3)
    opacities = proj.opacities.reshape(C * N)
    features = features.reshape(C * N, D)

    # Each tile's depth-sorted list is cut into segments of SEGMENT_LENGTH so that a chunk is one
    # dense [segments, pixels, SEGMENT_LENGTH] block with little padding; segments of one tile are
    # chained through their transmittance. A chunk holds whole tiles, about chunk_pixels rows of
    # (pixel, segment) pairs, which bounds its memory.
    busy = torch.nonzero(tile_count > 0).squeeze(1)
    segments = (tile_count[busy] + SEGMENT_LENGTH - 1) // SEGMENT_LENGTH
    rows_before = torch.cumsum(segments * pix, 0) - segments * pix
    chunk_of = (rows_before // max(chunk_pixels, pix)).tolist()
    local = torch.arange(pix, device=device)
    slots = torch.arange(SEGMENT_LENGTH, device=device)
    out_tiles, out_rows = [], []
    start = 0
    while start < busy.numel():
        stop = start
        while stop < busy.numel() and chunk_of[stop] == chunk_of[start]:
            stop += 1
        tiles, n_seg = busy[start:stop], segments[start:stop]  # [B]
        start = stop
        seg_tile = torch.repeat_interleave(torch.arange(tiles.numel(), device=device), n_seg)  # [S]
        seg_index = torch.arange(seg_tile.numel(), device=device) - (torch.cumsum(n_seg, 0) - n_seg)[seg_tile]
        slot = seg_index[:, None] * SEGMENT_LENGTH + slots[None, :]  # [S, L] position in the tile's list
        valid = slot < tile_count[tiles][seg_tile][:, None]
        ids = flat_ids[(tile_start[tiles][seg_tile][:, None] + slot).clamp_max(flat_ids.numel() - 1)]  # [S, L]
        in_image = tiles % (tiles_x * tiles_y)
        px = ((in_image % tiles_x) * tile_size)[:, None] + (local % tile_size)[None, :]  # [B, P]
        py = ((in_image // tiles_x) * tile_size)[:, None] + (local // tile_size)[None, :]
        rows = _composite(
            px.to(dtype)[seg_tile] + 0.5, py.to(dtype)[seg_tile] + 0.5, means2d[ids], conics[ids], opacities[ids],
            features[ids], valid, seg_tile, seg_index, tiles.numel(),
        )
        out_tiles.append(tiles)
        out_rows.append(rows)

    full = torch.zeros(n_tiles, pix, D + 1, dtype=dtype, device=device)
    if out_rows:
        full = full.index_copy(0, torch.cat(out_tiles), torch.cat(out_rows))
    # [C * ty * tx, P, D+1] -> [C, ty, tx, ts, ts, D+1] -> [C, ty*ts, tx*ts, D+1], cropped to H x W
    full = full.reshape(C, tiles_y, tiles_x, tile_size, tile_size, D + 1).permute(0, 1, 3, 2, 4, 5)
    full = full.reshape(C, tiles_y * tile_size, tiles_x * tile_size, D + 1)[:, :height, :width]
    return full[..., :D], full[..., D:]


def _tile_lists(proj: Projected, tile_size: int, tiles_x: int, tiles_y: int) -> tuple[Tensor, Tensor, Tensor]:
    """Which Gaussians each tile must test, front to back.

    Returns flat_ids [M] (indices into the flattened [C * N] Gaussians, grouped by tile and sorted
    by depth within a tile), tile_start [C * tiles] and tile_count [C * tiles] into flat_ids.
    """
    C, N = proj.depths.shape
    device = proj.depths.device
    n_tiles = C * tiles_x * tiles_y
    with torch.no_grad():
        radius = proj.radii.reshape(C * N, 2).to(proj.means2d.dtype)
        centre = proj.means2d.detach().reshape(C * N, 2)
        visible = (proj.radii.reshape(C * N, 2) > 0).all(dim=-1)
        lo = torch.floor((centre - radius) / tile_size).long()
        hi = torch.floor((centre + radius) / tile_size).long()
        limit = torch.tensor([tiles_x - 1, tiles_y - 1], device=device)
        lo = torch.minimum(lo.clamp_min(0), limit)
        hi = torch.minimum(hi.clamp_min(0), limit)
        span = hi - lo + 1  # [C*N, 2] tiles covered along x and y
        per_gauss = torch.where(visible, span[:, 0] * span[:, 1], torch.zeros_like(span[:, 0]))

        gauss = torch.repeat_interleave(torch.arange(C * N, device=device), per_gauss)  # [M]
        first = torch.cumsum(per_gauss, 0) - per_gauss
        k = torch.arange(gauss.numel(), device=device) - first[gauss]  # index inside the box
        tx = lo[gauss, 0] + k % span[gauss, 0]
        ty = lo[gauss, 1] + k // span[gauss, 0]
        tile = (gauss // N) * (tiles_x * tiles_y) + ty * tiles_x + tx

        # sort by (tile, depth) with one integer key: depth rank among all C*N Gaussians
        depth_rank = torch.empty(C * N, dtype=torch.long, device=device)
        depth_rank[torch.argsort(proj.depths.detach().reshape(-1))] = torch.arange(C * N, device=device)
        order = torch.argsort(tile * (C * N) + depth_rank[gauss])
        flat_ids = gauss[order]
        tile_count = torch.bincount(tile, minlength=n_tiles)
        tile_start = torch.cumsum(tile_count, 0) - tile_count
    return flat_ids, tile_start, tile_count


def _composite(
    px: Tensor, py: Tensor, means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, valid: Tensor,
    seg_tile: Tensor, seg_index: Tensor, n_tiles: int,
) -> Tensor:
    """Front-to-back compositing of one chunk of S segments belonging to `n_tiles` tiles.

    px, py [S, P] pixel centres of each segment's tile; means2d [S, L, 2], conics [S, L, 3],
    opacities [S, L], features [S, L, D]: depth-sorted list entries, valid [S, L] marks real ones;
    seg_tile [S] the segment's tile in 0..n_tiles-1, seg_index [S] its rank within that tile.
    Returns [n_tiles, P, D + 1]: accumulated features and accumulated alpha.
    """
    dx = means2d[:, None, :, 0] - px[:, :, None]  # [S, P, L]
    dy = means2d[:, None, :, 1] - py[:, :, None]
    a, b, c = (conics[:, None, :, i] for i in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = (opacities[:, None, :] * torch.exp(-sigma)).clamp_max(ALPHA_MAX)
    keep = valid[:, None, :] & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(keep, alpha, 0.0)
    log_one_minus = torch.log1p(-alpha)
    log_t_local = torch.cumsum(log_one_minus, dim=-1)  # log T after each entry, within the segment
    # log T entering each segment: sum over the tile's earlier segments
    seg_total = log_t_local[..., -1]  # [S, P]
    grid = seg_total.new_zeros(n_tiles, int(seg_index.max()) + 1, seg_total.shape[1])
    grid = grid.index_put((seg_tile, seg_index), seg_total)
    entering = (torch.cumsum(grid, dim=1) - grid)[seg_tile, seg_index]  # [S, P]
    log_t_after = log_t_local + entering[..., None]
    # T is non-increasing, so "T after <= stop" marks exactly the entries gsplat never reaches
    reached = log_t_after.detach() > _LOG_TRANSMITTANCE_STOP
    weights = torch.where(reached, alpha * torch.exp(log_t_after - log_one_minus), 0.0)
    # sum of the weights over a prefix is exactly 1 - T at its end
    rows = torch.cat([weights @ features, weights.sum(dim=-1, keepdim=True)], dim=-1)  # [S, P, D + 1]
    return rows.new_zeros((n_tiles,) + rows.shape[1:]).index_add(0, seg_tile, rows)
