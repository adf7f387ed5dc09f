"""Benchmark: dense CPU renderer, forward and forward + backward (not a test).

    PYTHONPATH=. python tests/perf/bench_render.py [--repeats 3] [--tile-sizes 8] [--threads 2]

Scenes look like a training start: `n` Gaussians uniform in a ball of InitConfig.ball_radius,
isotropic std = RMS distance to the InitConfig.knn_neighbours nearest neighbours, opacity
InitConfig.opacity, random colours; one batch of CameraConfig training cameras (C = 4).
Prints a table and writes results/perf/render_dense_cpu.json atomically.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from generators.cameras import sample_training_cameras
from generators.config import CameraConfig, InitConfig, RenderConfig
from generators.gaussians import Gaussians
from generators.io import atomic_write_json
from generators.render.dense import TILE_SIZE, render_dense

OUT = "results/perf/render_dense_cpu.json"


def ball_scene(n: int, init: InitConfig, seed: int) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    radius = init.ball_radius * torch.rand(n, 1, generator=gen) ** (1 / 3)
    points = direction * radius
    d2 = torch.cdist(points, points).pow(2)
    d2.fill_diagonal_(float("inf"))
    knn = d2.topk(init.knn_neighbours, largest=False).values.mean(-1).clamp_min(init.min_scale_sq)
    return Gaussians.from_points(points, torch.rand(n, 3, generator=gen), knn.sqrt(), init.opacity)


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--gaussians", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[TILE_SIZE])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = RenderConfig(backend="dense")
    background = torch.zeros(3)
    rows = []
    print(f"{'N':>6} {'size':>5} {'tile':>4} {'fwd s':>8} {'fwd+bwd s':>10} {'visible':>8} {'mean alpha':>10}")
    for n in args.gaussians:
        g = ball_scene(n, InitConfig(), seed=0)
        for size in args.sizes:
            cams = sample_training_cameras(
                CameraConfig(batch_size=args.cameras, width=size, height=size), torch.Generator().manual_seed(0)
            )
            for tile in args.tile_sizes:
                with torch.no_grad():
                    out = render_dense(g, cams, cfg, background, tile_size=tile)
                    fwd = timed(lambda: render_dense(g, cams, cfg, background, tile_size=tile), args.repeats)

                def step():
                    g.zero_grad(set_to_none=True)
                    o = render_dense(g, cams, cfg, background, tile_size=tile)
                    (o.rgb.sum() + o.depth.sum()).backward()

                both = timed(step, args.repeats)
                row = {
                    "gaussians": n, "size": size, "cameras": args.cameras, "tile_size": tile,
                    "forward_s": round(fwd, 4), "forward_backward_s": round(both, 4),
                    "visible_fraction": round((out.radii > 0).float().mean().item(), 3),
                    "mean_alpha": round(out.alpha.mean().item(), 3),
                }
                rows.append(row)
                print(f"{n:>6} {size:>5} {tile:>4} {fwd:>8.3f} {both:>10.3f} {row['visible_fraction']:>8.3f} "
                      f"{row['mean_alpha']:>10.3f}")
    atomic_write_json(args.out, {
        "benchmark": "render_dense fwd / fwd+bwd, median of repeats after one warm-up",
        "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "repeats": args.repeats, "rows": rows,
        # the project CPU is shared: a load above the core count makes every number here slower
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
