"""Benchmark: seconds per optimisation step of each method on the same model set and device (not a test).

    PYTHONPATH=. python tests/perf/bench_methods.py [--models tiny] [--steps 12] [--warmup 2]
    PYTHONPATH=. python tests/perf/bench_methods.py --models sd15-random --device cuda --precision bf16
    PYTHONPATH=. python tests/perf/bench_methods.py --models sd21-random --device cuda --methods anchords-cn,vsd --rounds 0

`--models sd15-random` runs the real SD 1.5 / IP-Adapter-Plus / ViT-H / ControlNet sizes with
random weights at the paper's settings (4 views, 1024 px renders, 512 px VAE input, a 100k
Gaussian ball init): true GPU timings without downloads; `--models sd21-random` the SD 2.1-base /
OpenCLIP-H text / ControlNet sizes (the ControlNet methods and VSD; it has no IP-Adapter). The
sets are built into the model cache on first use (4.2-4.4 GB each in fp16). Every method loads
its own copy of the networks, in the dtype of the run's precision (as a run loads them), twice
when the guidance part is timed too (once to train, once untrained); `--rounds 0` skips that part
and its second load. `--precision bf16|fp16|fp32` sets the run setting `precision` (default auto:
bf16 on Ampere and newer, fp32 on CPU).

The issue's targets, per step on the same model set and device: anchords-ipa within 1.10x of sds,
anchords-ipa-finetune within 1.25x (the released code: 25 -> 30 min, 1.20x). Each method runs the
full loop (render, VAE encode, guidance, backward, optimizer, densify) from the same Shap-E init;
the first `warmup` steps are dropped. Besides the whole step, the guidance part alone is timed on
fixed renders, round-robin over the methods (so load changes on a shared machine hit all alike),
since on CPU the dense rasterizer dominates the whole step.
Prints a table and writes results/perf/methods_<models>_<device>.json atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from generators.io import atomic_write_json
from generators.methods import resolve_run_config
from generators.models.loader import load_models
from generators.precision import resolve_precision
from generators.render import render
from generators.train import required_components, resolve_device, step_generator, train

METHODS = ["sds", "anchords-ipa", "anchords-ipa-filter", "anchords-ipa-finetune", "sds-bridge",
           "anchords-cn", "anchords-cn-filter", "anchords-cn-finetune", "vsd"]


def guidance_seconds_interleaved(configs: dict, models: dict, device, rounds: int) -> dict[str, float]:
    """Median time of Guidance.__call__ + backward (+ trainer step) per method, on fixed renders.

    Methods are timed round-robin (one call of each per round), so a change in machine load hits
    every method alike and the ratios stay meaningful on a shared machine.
    """
    from generators.cameras import sample_training_cameras
    from generators.train import build_guidance, initial_gaussians

    first = next(iter(configs.values()))
    gaussians = initial_gaussians(first, models[first.method], device)
    guides = {m: build_guidance(cfg, models[m]) for m, cfg in configs.items()}
    times: dict[str, list[float]] = {m: [] for m in configs}
    for r in range(rounds + 1):
        gen_seed = step_generator(first.seed, r)
        cams = sample_training_cameras(first.camera, gen_seed).to(device)
        with torch.no_grad():
            base = render(gaussians, cams, first.render)
        for m, guidance in guides.items():
            out = dataclasses.replace(base, rgb=base.rgb.detach().clone().requires_grad_(True))
            gen = step_generator(first.seed, r)
            t0 = time.perf_counter()
            g = guidance(out, cams, r, gen)
            loss = g.loss_sds + (g.loss_finetune if g.loss_finetune is not None else 0.0)
            loss.backward()
            if guidance.trainer is not None:
                guidance.trainer.step()
                guidance.trainer.zero_grad()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r > 0:  # round 0 warms up
                times[m].append(time.perf_counter() - t0)
    return {m: statistics.median(v) for m, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="tiny")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="round-robin rounds of the guidance-only timing")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--device", default="auto")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides key=value")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=None,
                   help="the run setting `precision` (default: the config's own)")
    p.add_argument("--out", default=None, help="JSON file (default results/perf/methods_<models>_<device>.json)")
    args = p.parse_args()
    from generators.config import parse_dotted
    from generators.errors import UserError

    device = resolve_device(args.device)
    rows = []
    configs, models = {}, {}
    extra = {"precision": args.precision} if args.precision else {}
    for method in args.methods.split(","):
        try:
            cfg = resolve_run_config(method, prompt="a red apple", models=args.models,
                                     overrides={**parse_dotted(args.overrides), **extra, "steps": args.steps,
                                                "log_every": 1, "checkpoint_every": 10**9, "device": device.type})
        except UserError as e:
            raise SystemExit(f"error: {e}")
        configs[method] = cfg
        t_load = time.perf_counter()
        weights_dtype = resolve_precision(cfg.precision, device).weights_dtype  # as run_generation loads them
        models[method] = load_models(cfg.models, required_components(cfg), device, dtype=weights_dtype)  # own copy
        load_s = time.perf_counter() - t_load
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)  # the per-method peak (other methods' copies included)
        with tempfile.TemporaryDirectory() as tmp:
            state = train(cfg, models[method], Path(tmp), device)
        step_times = [r["step_time_s"] for r in state.log[args.warmup:]]
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        rows.append({"method": method, "seconds_per_step": statistics.median(step_times),
                     "num_gaussians": len(state.gaussians), "peak_memory_mb_so_far": peak, "load_seconds": load_s})
        print(f"{method:<24} {rows[-1]['seconds_per_step']:.3f} s/step (whole step)", flush=True)
        rows[-1]["precision"] = resolve_precision(cfg.precision, device).name
        rows[-1]["weights_dtype"] = str(models[method].dtype).replace("torch.", "")
        models[method] = None  # free the trained copy before loading the next (full-size sets on a GPU)
        del state
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.rounds > 0:
            models[method] = load_models(cfg.models, required_components(cfg), device, dtype=weights_dtype)  # untrained
    guide = guidance_seconds_interleaved(configs, models, device, rounds=args.rounds) if args.rounds > 0 else {}
    for r in rows:
        r["guidance_seconds"] = guide.get(r["method"])  # None: not timed (--rounds 0)
    base = {r["method"]: r for r in rows}.get("sds")
    if base:
        for r in rows:
            r["step_ratio_vs_sds"] = r["seconds_per_step"] / base["seconds_per_step"]
            if guide:
                r["guidance_ratio_vs_sds"] = r["guidance_seconds"] / base["guidance_seconds"]
    nan = float("nan")
    print(f"\n{'method':<24} {'s/step':>8} {'x sds':>6} {'guidance s':>11} {'x sds':>6} {'peak MiB':>9}")
    for r in rows:
        print(f"{r['method']:<24} {r['seconds_per_step']:8.3f} {r.get('step_ratio_vs_sds', nan):6.2f} "
              f"{r['guidance_seconds'] or nan:11.3f} {r.get('guidance_ratio_vs_sds', nan):6.2f} "
              f"{r['peak_memory_mb_so_far']:9.0f}")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()}-core CPU"
    atomic_write_json(args.out or f"results/perf/methods_{args.models}_{device.type}.json", {
        "command": "PYTHONPATH=. python tests/perf/bench_methods.py " + " ".join(sys.argv[1:]),
        "device": device_name, "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(), "models": args.models, "steps": args.steps, "warmup": args.warmup,
        "precision": args.precision, "rows": rows,
    })


if __name__ == "__main__":
    main()
