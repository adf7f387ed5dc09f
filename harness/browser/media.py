"""What a prompt page plays and shows: turntable videos and the Gaussians as classic scripts.

Both are derived from a run's files and written once: a file already in the report that is newer
than its source is kept, so a second `make report` only writes what changed.

Video: H.264 MP4 (yuv420p, what threestudio / GaussianDreamer users expect and every browser
plays). A run's own turntable.mp4 (generators/outputs.py) is played where it lies, not copied
(the pages reach it by a relative path: keep the report folder beside the runs/ folder); a run
that has only its GIF gets an MP4 made from it in media/ (upscaled when tiny). Without
imageio-ffmpeg the GIF is copied and shown as an image.

Gaussians: a page opened from disk cannot fetch a .ply, so the run's gaussians.ply goes base64
into `splats/<key>.js`, a classic script the page loads with `<script src>` (vendor/gsplat/README.md).
It keeps only what the viewer reads (position, DC colour, opacity, scale, rotation: 14 of the 62
floats of an SH-3 splat) and, above `max_bytes`, the most opaque Gaussians that fit.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from generators.io import atomic_write_bytes, atomic_write_text
from generators.outputs import RUN_FILES, video_available, write_mp4


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
    """Nearest-neighbour upscale by an integer factor so tiny (toy, 32 px) renders stay crisp."""
    k = max(1, -(-min_height // frames.shape[1]))
    return frames.repeat(k, axis=1).repeat(k, axis=2) if k > 1 else frames


def turntable(run_dir: Path, report_dir: Path, key: str, min_height: int) -> tuple[Optional[str], str]:
    """(path relative to report_dir, kind 'video' | 'gif') of the run's turntable, or (None, why):
    the run's own MP4 in place, else one made from its GIF (or the GIF) in report_dir/media/."""
    own = run_dir / RUN_FILES["video"]
    if own.is_file():
        return os.path.relpath(own, report_dir), "video"
    src = run_dir / RUN_FILES["turntable"]
    if not src.is_file():
        return None, "no turntable"
    if video_available():
        target = report_dir / "media" / f"{key}.mp4"
        if not _fresh(target, src):
            frames, fps = gif_frames(src)
            write_mp4(target, _upscale(frames, min_height), fps)
        return os.path.relpath(target, report_dir), "video"
    target = report_dir / "media" / f"{key}.gif"
    if not _fresh(target, src):
        atomic_write_bytes(target, src.read_bytes())
    return os.path.relpath(target, report_dir), "gif"


VIEWER_PROPERTIES = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                     "rot_0", "rot_1", "rot_2", "rot_3")  # what gsplat.js's PLY loader reads


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
    keep = [i for i, p in enumerate(props) if p in VIEWER_PROPERTIES]
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


NOTE_PREFIX = "// "


def splat_script(run_dir: Path, out_dir: Path, key: str, max_bytes: int) -> tuple[Optional[str], str]:
    """(file name under out_dir, note) of a classic script that registers the run's Gaussians as
    `window.SPLATS[key]` (base64 PLY), or (None, why)."""
    src = run_dir / "gaussians.ply"
    if not src.is_file():
        return None, "no gaussians.ply"
    target = out_dir / f"{key}.js"
    if _fresh(target, src):  # the note is the script's first line: no need to read the .ply again
        with open(target, encoding="utf-8") as f:
            return target.name, f.readline()[len(NOTE_PREFIX):].strip()
    data = src.read_bytes()
    payload = _thin_ply(data, max_bytes)
    note = f"{_count(data)} Gaussians"
    if _count(payload) != _count(data):
        note += f", the {_count(payload)} most opaque shown (page limit {_size(max_bytes)})"
    text = (f"{NOTE_PREFIX}{note}\n(window.SPLATS = window.SPLATS || {{}})[{json.dumps(key)}] = "
            f"\"{base64.b64encode(payload).decode('ascii')}\";\n")
    atomic_write_text(target, text)
    return target.name, note
