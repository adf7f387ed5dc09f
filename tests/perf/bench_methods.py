"""Benchmark: seconds per optimisation step of each method on the same model set and device (not a test).

    PYTHONPATH=. python tests/perf/bench_methods.py [--models tiny] [--steps 12] [--warmup 2]

The issue's targets, per step on the same model set and device: anchords-ipa within 1.10x of sds,
anchords-ipa-finetune within 1.25x (the released code: 25 -> 30 min, 1.20x). Each method runs the
full loop (render, VAE encode, guidance, backward, optimizer, densify) from the same Shap-E init;
the first `warmup` steps are dropped. Besides the whole step, the guidance part alone is timed
(renders held fixed), since on CPU the dense rasterizer dominates the step.
Prints a table and writes results/perf/methods_<models>_<device>.json atomically.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from generators.io import atomic_write_json
from generators.methods import resolve_run_config
from generators.models.loader import load_models
from generators.render import render
from generators.train import required_components, resolve_device, step_generator, train

METHODS = ["sds", "anchords-ipa", "anchords-ipa-filter", "anchords-ipa-finetune", "sds-bridge",
           "anchords-cn", "anchords-cn-filter", "anchords-cn-finetune", "vsd"]


def guidance_only_seconds(cfg, models, device, repeats: int) -> float:
    """Median time of Guidance.__call__ + backward to the renders, on a fixed render."""
    from generators.cameras import sample_training_cameras
    from generators.guidance import Guidance
    from generators.train import initial_gaussians

    guidance = Guidance(models, cfg.guidance, cfg.camera, cfg.prompt)
    gaussians = initial_gaussians(cfg, models, device)
    times = []
    for step in range(repeats + 1):
        gen = step_generator(cfg.seed, step)
        cams = sample_training_cameras(cfg.camera, gen).to(device)
        with torch.no_grad():
            out = render(gaussians, cams, cfg.render)
        out.rgb = out.rgb.detach().requires_grad_(True)
        t0 = time.perf_counter()
        g = guidance(out, cams, step, gen)
        loss = g.loss_sds + (g.loss_finetune if g.loss_finetune is not None else 0.0)
        loss.backward()
        if guidance.trainer is not None:
            guidance.trainer.step()
            guidance.trainer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step > 0:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="tiny")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--device", default="auto")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides key=value")
    args = p.parse_args()
    from generators.config import parse_dotted

    device = resolve_device(args.device)
    rows = []
    for method in args.methods.split(","):
        cfg = resolve_run_config(method, prompt="a red apple", models=args.models,
                                 overrides={**parse_dotted(args.overrides), "steps": args.steps,
                                            "checkpoint_every": 10**9, "device": device.type})
        models = load_models(cfg.models, required_components(cfg), device)
        with tempfile.TemporaryDirectory() as tmp:
            state = train(cfg, models, Path(tmp), device)
        step_times = [r["step_time_s"] for r in state.log[args.warmup:]]
        guide_s = guidance_only_seconds(cfg, models, device, repeats=max(3, args.steps - args.warmup))
        rows.append({"method": method, "seconds_per_step": statistics.median(step_times),
                     "guidance_seconds": guide_s, "num_gaussians": len(state.gaussians)})
        print(f"{method:<24} {rows[-1]['seconds_per_step']:.3f} s/step   guidance {guide_s:.3f} s", flush=True)
    base = {r["method"]: r for r in rows}.get("sds")
    if base:
        for r in rows:
            r["step_ratio_vs_sds"] = r["seconds_per_step"] / base["seconds_per_step"]
            r["guidance_ratio_vs_sds"] = r["guidance_seconds"] / base["guidance_seconds"]
    print(f"\n{'method':<24} {'s/step':>8} {'x sds':>6} {'guidance s':>11} {'x sds':>6}")
    for r in rows:
        print(f"{r['method']:<24} {r['seconds_per_step']:8.3f} {r.get('step_ratio_vs_sds', float('nan')):6.2f} "
              f"{r['guidance_seconds']:11.3f} {r.get('guidance_ratio_vs_sds', float('nan')):6.2f}")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()}-core CPU"
    atomic_write_json(f"results/perf/methods_{args.models}_{device.type}.json", {
        "device": device_name, "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(), "models": args.models, "steps": args.steps, "warmup": args.warmup,
        "rows": rows,
    })


if __name__ == "__main__":
    main()
