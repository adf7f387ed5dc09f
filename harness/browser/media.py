"""What a prompt page plays and shows: turntable videos and the Gaussians as classic scripts.

Both are derived from a run's files and written once: a file already in the report that is newer
than its source is kept, so a second `make report` only writes what changed.

Video: H.264 MP4 (yuv420p, what threestudio / GaussianDreamer users expect and every browser
plays) through imageio-ffmpeg, whose wheel ships its own ffmpeg binary. Without it the turntable
GIF is copied and shown as an image.

Gaussians: a page opened from disk cannot fetch a .ply, so the run's gaussians.ply goes base64
into `splats/<key>.js`, a classic script the page loads with `<script src>` (vendor/gsplat/README.md).
A file above `max_bytes` is thinned first: higher-order SH dropped (the viewer reads only the DC
colour) and, if still too large, the most opaque Gaussians kept.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from generators.io import atomic_write, atomic_write_bytes, atomic_write_text


def _fresh(target: Path, source: Path) -> bool:
    """True when `target` exists and is at least as new as `source`."""
    return target.is_file() and target.stat().st_mtime >= source.stat().st_mtime


def gif_frames(path: Path) -> tuple[np.ndarray, float]:
    """[n, H, W, 3] uint8 frames of a GIF and its frame rate."""
    with Image.open(path) as im:
        frames, durations = [], []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
            durations.append(im.info.get("duration") or 100)
    return np.stack(frames), 1000.0 / (sum(durations) / len(durations))


def _upscale(frames: np.ndarray, min_height: int) -> np.ndarray:
    """Nearest-neighbour upscale by an integer factor so tiny (toy, 32 px) renders stay crisp,
    then pad to even sides (H.264 4:2:0 needs them)."""
    n, h, w, _ = frames.shape
    k = max(1, -(-min_height // h))
    if k > 1:
        frames = frames.repeat(k, axis=1).repeat(k, axis=2)
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def video_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """[n, H, W, 3] uint8 (even H, W) -> H.264 MP4, atomically."""
    import imageio_ffmpeg

    def write(tmp: Path) -> None:
        h, w = frames.shape[1:3]
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=1, output_params=["-movflags", "+faststart", "-f", "mp4"],
                                             ffmpeg_log_level="error")
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()

    atomic_write(path, write)


def turntable(run_dir: Path, out_dir: Path, key: str, min_height: int) -> tuple[Optional[str], str]:
    """(file name under out_dir, kind 'video' | 'gif') of the run's turntable, or (None, why)."""
    src = run_dir / "turntable.gif"
    if not src.is_file():
        return None, "no turntable"
    if video_available():
        target = out_dir / f"{key}.mp4"
        if not _fresh(target, src):
            frames, fps = gif_frames(src)
            write_mp4(target, _upscale(frames, min_height), fps)
        return target.name, "video"
    target = out_dir / f"{key}.gif"
    if not _fresh(target, src):
        atomic_write_bytes(target, src.read_bytes())
    return target.name, "gif"


def _thin_ply(data: bytes, max_bytes: int) -> bytes:
    """The same PLY with only the properties the viewer reads, and at most as many of the most
    opaque Gaussians as fit in `max_bytes`."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    lines = data[:end].decode("ascii").splitlines()
    props = [ln.split()[2] for ln in lines if ln.startswith("property float ")]
    if len(props) != sum(ln.startswith("property") for ln in lines):
        return data  # not our all-float layout: leave it alone
    count = int(next(ln.split()[2] for ln in lines if ln.startswith("element vertex")))
    rows = np.frombuffer(data, dtype="<f4", offset=end, count=count * len(props)).reshape(count, len(props))
    keep = [i for i, p in enumerate(props) if not p.startswith("f_rest_")]
    rows = rows[:, keep]
    room = max(1, (max_bytes - end) // (4 * len(keep)))
    if len(rows) > room and "opacity" in props:
        order = np.argsort(-rows[:, [props[i] for i in keep].index("opacity")], kind="stable")[:room]
        rows = rows[np.sort(order)]
    header = [ln for ln in lines if not ln.startswith("property") and not ln.startswith("element")
              and ln != "end_header"]
    header += [f"element vertex {len(rows)}", *(f"property float {props[i]}" for i in keep), "end_header"]
    return ("\n".join(header) + "\n").encode("ascii") + np.ascontiguousarray(rows, dtype="<f4").tobytes()


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _count(ply: bytes) -> str:
    head = ply[:4096].split(b"end_header", 1)[0].decode("ascii", "replace")
    return next((f"{int(ln.split()[2]):,}" for ln in head.splitlines() if ln.startswith("element vertex")), "?")


def splat_script(run_dir: Path, out_dir: Path, key: str, max_bytes: int) -> tuple[Optional[str], str]:
    """(file name under out_dir, note) of a classic script that registers the run's Gaussians as
    `window.SPLATS[key]` (base64 PLY), or (None, why)."""
    src = run_dir / "gaussians.ply"
    if not src.is_file():
        return None, "no gaussians.ply"
    target = out_dir / f"{key}.js"
    data = src.read_bytes()
    note = f"{_size(len(data))} .ply, {_count(data)} Gaussians"
    thinned = len(data) > max_bytes
    if thinned:
        note += f", thinned to {_size(max_bytes)} for the page (SH dropped, most opaque kept)"
    if not _fresh(target, src):
        payload = _thin_ply(data, max_bytes) if thinned else data
        text = (f"(window.SPLATS = window.SPLATS || {{}})[{json.dumps(key)}] = "
                f"\"{base64.b64encode(payload).decode('ascii')}\";\n")
        atomic_write_text(target, text)
    return target.name, note


def copy_if_newer(src: Path, target: Path) -> None:
    if not _fresh(target, src):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
