"""CPU time to score one run on the mesh path, at T3Bench's full protocol sizes.

    PYTHONPATH=. python tests/perf/bench_mesh_path.py [--gaussians 100000] [--resolution 256] [--threads 1]

A synthetic run stands in for a generated one: N Gaussians on the surface of an object of unit
size (an ellipsoid body and a sphere head), sizes log-normal around 1% of the object, opacity
0.9, colours by position. Steps timed: mesh export (density grid + marching cubes + colours),
T3Bench normalisation, and rendering every view of the three protocols at 512 px (quality 162 x 5,
alignment 12, CLIP 8) with metrics.mesh_render. Scoring the images is not timed (the real ImageReward,
BLIP-2 and CLIP weights are not on this machine). CPU time (time.process_time) of this process.
Writes results/perf/mesh_path.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch


def synthetic_object(n: int, seed: int = 0):
    from generators.gaussians.model import Gaussians

    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True)
    body = d[: n * 2 // 3] * torch.tensor([0.5, 0.3, 0.3])
    head = d[n * 2 // 3:] * 0.2 + torch.tensor([0.55, 0.0, 0.2])
    pts = torch.cat([body, head])
    colors = (pts - pts.min(0).values) / (pts.max(0).values - pts.min(0).values)
    scales = torch.exp(torch.randn(n, generator=g) * 0.3) * 0.01
    return Gaussians.from_points(pts, colors, scales, 0.9)


def main() -> None:
    from generators.mesh.extract import MeshExportConfig, extract_mesh, mesh_stats
    from metrics.cameras import alignment_cameras, clip_cameras, iter_views, quality_cameras
    from metrics.config import EvalConfig
    from metrics.normalize import normalize_mesh

    p = argparse.ArgumentParser()
    p.add_argument("--gaussians", type=int, default=100_000)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quality-points", type=int, default=0, help="time only this many quality points (0 = all 162)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = EvalConfig()
    out: dict = {"gaussians": args.gaussians, "resolution": args.resolution, "threads": args.threads,
                 "load_average": os.getloadavg(),
                 "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)"}
    gs = synthetic_object(args.gaussians)
    t = time.process_time()
    mesh = extract_mesh(gs, MeshExportConfig(resolution=args.resolution))
    out["export_cpu_s"] = time.process_time() - t
    out["mesh"] = {k: v for k, v in mesh_stats(mesh).items() if k != "bounds"}
    mesh, _ = normalize_mesh(mesh)
    cams, point, _ = quality_cameras(cfg.quality)
    protocols = {"quality": cams, "alignment": alignment_cameras(cfg.alignment_views), "clip": clip_cameras(cfg.clip)}
    if args.quality_points:
        protocols["quality"] = cams.subset(list(range(args.quality_points * len(cfg.quality.fov_y_deg))))
    for name, c in protocols.items():
        t = time.process_time()
        for _ in iter_views(mesh, c, cfg.render, (0.0, 0.0, 0.0), 10):
            pass
        spent = time.process_time() - t
        out[f"render_{name}_cpu_s"] = spent
        out[f"render_{name}_views"] = len(c)
        out[f"render_{name}_cpu_s_per_view"] = spent / len(c)
    full_quality = len(cams) * out["render_quality_cpu_s_per_view"]
    out["total_cpu_s_full_protocol"] = (out["export_cpu_s"] + full_quality + out["render_alignment_cpu_s"]
                                        + out["render_clip_cpu_s"])
    print(json.dumps(out, indent=2))
    dest = Path("results/perf/mesh_path.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
