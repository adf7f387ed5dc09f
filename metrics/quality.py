"""T3Bench quality: ImageReward over 162 icosphere points x 5 fields of view, smoothed, best point.

run_eval_quality.py, step by step (docs/t3bench.md section 1):
  1. score every view with ImageReward-v1.0 (standardised scores);
  2. per point, keep the best field of view: s_v = max_f score[v, f];
  3. 3 rounds of regional averaging over the icosphere 1-ring (metrics.icosphere);
  4. q = 20 * max_v s_v + 50, not clipped.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from metrics.cameras import iter_views, quality_cameras
from metrics.config import QualityConfig
from metrics.icosphere import icosphere, regional_average


def quality_score(view_scores: Tensor, cfg: QualityConfig = QualityConfig(), neighbours=None) -> dict:
    """view_scores [V, F] (ImageReward per point and field of view) -> the T3Bench quality.

    `neighbours` defaults to the 1-rings of icosphere(cfg.icosphere_subdivisions), in the vertex
    order of metrics.icosphere (the order quality_cameras uses).
    """
    view_scores = torch.as_tensor(view_scores, dtype=torch.float64)
    if view_scores.ndim != 2:
        raise ValueError(f"view_scores must be [V, F], got {tuple(view_scores.shape)}")
    if not torch.isfinite(view_scores).all():
        raise ValueError("view_scores contain NaN or infinity: refusing to make a quality number from them")
    if neighbours is None:
        neighbours = icosphere(cfg.icosphere_subdivisions).neighbours
    best, best_fov = view_scores.max(dim=1)  # [V]
    smoothed = regional_average(best, neighbours, cfg.smoothing_rounds)  # [V]
    best_point = int(torch.argmax(smoothed))
    s = float(smoothed[best_point])
    return {
        "score": cfg.scale * s + cfg.offset,
        "best_point": best_point,
        "best_point_smoothed": s,
        "best_fov_index": best_fov.tolist(),  # [V]
        "point_scores": smoothed.tolist(),  # [V] after smoothing
    }


def evaluate_quality(gaussians, prompt: str, cfg: QualityConfig, render_cfg, scorer,
                     progress: Optional[callable] = None) -> dict:
    """Render the V x F views of normalised `gaussians` in batches, score them, aggregate.

    `scorer.score(prompt, uint8 [B, H, W, 3]) -> [B]` (ImageRewardScorer). Views are scored in
    chunks of `cfg.score_batch` as they are rendered, so the 810 images never sit in memory together.
    """
    cams, point, fov = quality_cameras(cfg)
    n_points, n_fov = int(point.max()) + 1, len(cfg.fov_y_deg)
    scores = torch.full((len(cams),), float("nan"), dtype=torch.float64)
    render_s = score_s = 0.0
    pending: list[np.ndarray] = []
    pending_start = 0

    def flush(images: list[np.ndarray], start: int) -> int:
        nonlocal score_s
        batch = np.concatenate(images)
        t = time.perf_counter()
        scores[start:start + len(batch)] = scorer.score(prompt, batch).to(torch.float64)
        score_s += time.perf_counter() - t
        return start + len(batch)

    t = time.perf_counter()
    for start, images in iter_views(gaussians, cams, render_cfg, cfg.background, cfg.render_batch):
        render_s += time.perf_counter() - t
        pending.append(images)
        if sum(len(p) for p in pending) >= cfg.score_batch:
            pending_start = flush(pending, pending_start)
            pending = []
        if progress is not None:
            progress(start + len(images), len(cams))
        t = time.perf_counter()
    if pending:
        flush(pending, pending_start)
    view_scores = scores.view(n_points, n_fov)
    result = quality_score(view_scores, cfg)
    result.update(
        view_scores=view_scores.tolist(),  # [V][F], points in metrics.icosphere order
        num_views=len(cams),
        timing={"render_s": render_s, "score_s": score_s},
    )
    return result
