"""What a finished run leaves in its directory, besides checkpoints.

    config.yaml         the resolved RunConfig
    gaussians.ply       the 3D Gaussians in the standard 3DGS layout
    views.png           a grid of `views.grid_views` renders around the object
    turntable.gif       `views.turntable_frames` frames at `views.turntable_fps`
    turntable.mp4       the same frames as H.264 video (when imageio-ffmpeg is installed): what the
                        benchmark browser plays
    train_log.parquet   one row per logged step (rewritten at every checkpoint, so it is readable while running)
    progress.json       step, steps, loss, Gaussian count, s/step, ETA: rewritten at every checkpoint
    status.json         written last and atomically: the run is done only when this says so; it
                        records the code version (git commit) and package versions (run_provenance)
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generators.cameras import orbit_cameras
from generators.config import RenderConfig, ViewsConfig
from generators.gaussians import Gaussians
from generators.io import atomic_write, atomic_write_bytes, atomic_write_json
from generators.provenance import run_provenance  # noqa: F401  (status.json, via train.py)
from generators.render import render

RUN_FILES = {
    "config": "config.yaml",
    "ply": "gaussians.ply",
    "grid": "views.png",
    "turntable": "turntable.gif",
    "video": "turntable.mp4",
    "log": "train_log.parquet",
    "progress": "progress.json",
    "status": "status.json",
    "checkpoint": "checkpoints/last.pt",
}


@torch.no_grad()
def render_orbit(gaussians: Gaussians, views: ViewsConfig, render_cfg: RenderConfig, n: int,
                 chunk: int = 8) -> np.ndarray:
    """[n, H, W, 3] uint8 renders at evenly spaced azimuths (starting at the front, azimuth 0)."""
    cams = orbit_cameras(n, views.elevation_deg, views.distance, views.fov_y_deg, views.width, views.height)
    bg = torch.tensor(views.background, dtype=torch.float32, device=gaussians.device)
    frames = []
    for i in range(0, n, chunk):
        out = render(gaussians, cams.subset(list(range(i, min(n, i + chunk)))), render_cfg, bg)
        frames.append((out.rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
    return np.concatenate(frames)


def image_grid(frames: np.ndarray, columns: int | None = None) -> np.ndarray:
    """[n, H, W, 3] -> one [rows*H, cols*W, 3] image."""
    n, h, w, _ = frames.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = f
    return grid


def write_png(path, image: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_gif(path, frames: np.ndarray, fps: int) -> None:
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    atomic_write_bytes(path, buf.getvalue())


def video_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_mp4(path, frames: np.ndarray, fps: float) -> None:
    """[n, H, W, 3] uint8 -> H.264 MP4 (yuv420p, faststart), atomically; odd sides are padded by
    one edge pixel (4:2:0 needs even sides). Needs imageio-ffmpeg (its wheel ships ffmpeg)."""
    import imageio_ffmpeg

    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")

    def write(tmp) -> None:
        writer = imageio_ffmpeg.write_frames(str(tmp), (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=1, ffmpeg_log_level="error",
                                             output_params=["-movflags", "+faststart", "-f", "mp4"])
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()

    atomic_write(path, write)


def write_views(run_dir, gaussians: Gaussians, views: ViewsConfig, render_cfg: RenderConfig) -> None:
    grid = render_orbit(gaussians, views, render_cfg, views.grid_views)
    write_png(run_dir / RUN_FILES["grid"], image_grid(grid, columns=min(4, views.grid_views)))
    if views.turntable_frames > 0:
        frames = render_orbit(gaussians, views, render_cfg, views.turntable_frames)
        write_gif(run_dir / RUN_FILES["turntable"], frames, views.turntable_fps)
        if video_available():
            write_mp4(run_dir / RUN_FILES["video"], frames, views.turntable_fps)


def write_log(path, rows: list[dict]) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


PROGRESS_WINDOW = 20  # logged steps the s/step estimate averages (recent ones: densification slows steps)


def write_progress(run_dir, step: int, steps: int, log: list[dict]) -> dict:
    """At a checkpoint: progress.json (step k of N, last loss, Gaussians, s/step over the recent
    logged steps, ETA) and the train log so far. Returns the progress record."""
    recent = [r["step_time_s"] for r in log[-PROGRESS_WINDOW:] if r.get("step_time_s") is not None]
    sps = sum(recent) / len(recent) if recent else None
    last = log[-1] if log else {}
    progress = {"step": step, "steps": steps, "loss": last.get("loss"), "num_gaussians": last.get("num_gaussians"),
                "seconds_per_step": sps, "eta_s": None if sps is None else sps * max(0, steps - step),
                "updated_at": time.time()}
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / RUN_FILES["progress"], progress)
    if log:
        write_log(run_dir / RUN_FILES["log"], log)
    return progress
