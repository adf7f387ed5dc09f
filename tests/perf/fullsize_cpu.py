"""Every method, two optimisation steps on CPU on the full-size random-weight sets, at a reduced size.

    PYTHONPATH=. python tests/perf/fullsize_cpu.py                      # all methods, 64 px, writes results/perf/fullsize_cpu.json
    PYTHONPATH=. python tests/perf/fullsize_cpu.py --size 128 --vae-size 128 --methods sds,vsd --out /tmp/x.json

Each method runs on the random set of its preset's model set (`sd15` -> `sd15-random`,
`sd21` -> `sd21-random`), loaded by the one loader (`load_models`) and trained by the one loop
(`generators.train.train`), with the renders and the VAE input shrunk so a 2-core CPU can afford
it: full-size networks, small activations. Each method runs in its own process, one after
another, so its peak resident memory (ru_maxrss: loading included) is its own and the next one
starts from nothing. The sets are built on first use into the model cache (.cache/models) and
reused afterwards.

Per method it records: seconds to load, seconds of each step (the first one warms up), peak RSS,
the losses, whether the Gaussians moved and whether the trainable part (finetune, VSD's LoRA)
changed. tests/test_fullsize_cpu.py runs it and checks those; as a benchmark it writes
results/perf/fullsize_cpu.json atomically (the command that made it is in the file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

METHODS = ["sds", "anchords-ipa", "anchords-ipa-filter", "anchords-ipa-finetune", "sds-bridge",
           "anchords-cn", "anchords-cn-filter", "anchords-cn-finetune", "vsd"]
ROW_PREFIX = "FULLSIZE_ROW "  # the child's one line of JSON on stdout
DEFAULT_OUT = "results/perf/fullsize_cpu.json"


def random_set_of(method: str) -> str:
    """The full-size random set standing in for the method preset's model set."""
    from generators.methods import resolve_run_config

    return f"{resolve_run_config(method, prompt='x').models}-random"


def reduced_overrides(size: int, vae_size: int, steps: int, ball_points: int, views: int = 4) -> dict:
    """The paper's settings but for the sizes: `views` views (the paper: 4), `size` px renders, `vae_size` px VAE input."""
    return {"steps": steps, "log_every": 1, "checkpoint_every": 10**9, "device": "cpu",
            "camera": {"width": size, "height": size, "batch_size": views}, "guidance": {"vae_input_size": vae_size},
            "init": {"kind": "ball", "ball_points": ball_points}}


def _float_tensors(tree, prefix: str = "") -> dict:
    """Every floating tensor of a nested state dict, by path (copied)."""
    import torch

    out = {}
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point():
            out[prefix] = tree.detach().float().clone()
    elif isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_float_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(_float_tensors(v, f"{prefix}.{i}"))
    return out


def run_config(method: str, models: str, size: int, vae_size: int, steps: int, ball_points: int, views: int = 4):
    from generators.methods import resolve_run_config

    return resolve_run_config(method, prompt="a red apple", models=models,
                              overrides=reduced_overrides(size, vae_size, steps, ball_points, views))


def run_one(method: str, models: str, size: int, vae_size: int, steps: int, ball_points: int) -> dict:
    """Load `models`, train `method` for `steps` steps in this process; the row of measurements."""
    import generators.train as loop
    from generators.models.loader import load_models

    cfg = run_config(method, models, size, vae_size, steps, ball_points)
    t0 = time.perf_counter()
    nets = load_models(cfg.models, loop.required_components(cfg), "cpu")
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**train_steps(cfg, nets), "load_seconds": load_s, "peak_rss_after_load_mb": rss_after_load,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_average": os.getloadavg()}  # the machine's load as the steps ended (a shared machine slows them)


def train_steps(cfg, nets) -> dict:
    """Run the loop of `cfg` on loaded networks `nets`; what moved, what it cost (no memory numbers).

    The networks may be shared with other methods' runs: the trainable parts (finetune, VSD's
    LoRA) change them, so callers that share put those methods last.
    """
    import torch

    import generators.train as loop

    captured = {}
    build_guidance = loop.build_guidance

    def build_and_snapshot(cfg, models):  # the loop's own guidance, its trainable part seen before step 0
        guidance = build_guidance(cfg, models)
        captured["guidance"] = guidance
        captured["before"] = _float_tensors(guidance.trainer.state_dict()) if guidance.trainer is not None else {}
        return guidance

    with mock.patch.object(loop, "build_guidance", build_and_snapshot), tempfile.TemporaryDirectory() as tmp:
        state = loop.train(cfg, nets, Path(tmp), torch.device("cpu"))
    trainer = captured["guidance"].trainer
    after = _float_tensors(trainer.state_dict()) if trainer is not None else {}
    shared = [k for k in captured["before"] if k in after]
    start = loop.initial_gaussians(cfg, nets, torch.device("cpu"))
    moved = {name: float((p.detach() - start.params[name]).abs().max()) for name, p in state.gaussians.params.items()
             if p.numel() and p.shape == start.params[name].shape}
    unet_params = sum(p.numel() for n, p in nets.unet.named_parameters() if "lora" not in n)
    return {
        "method": cfg.method, "models": cfg.models, "render_px": cfg.camera.width, "vae_input_px": cfg.guidance.vae_input_size,
        "views": cfg.camera.batch_size, "unet_parameters": unet_params, "num_gaussians": len(state.gaussians),
        "steps": len(state.log), "step_seconds": [r["step_time_s"] for r in state.log],
        "seconds_per_step": state.log[-1]["step_time_s"],  # the last step: step 0 includes warm-up
        "losses": [r["loss"] for r in state.log],
        "all_losses_finite": all(math.isfinite(r["loss"]) for r in state.log),
        "gaussians_max_change": moved,
        "trainable": trainer is not None,
        "trainable_tensors_changed": sum(not torch.equal(captured["before"][k], after[k]) for k in shared),
        "trainable_tensors": len(shared),
        "dtype": str(nets.dtype).replace("torch.", ""),
    }


def run_all(methods: list[str], size: int, vae_size: int, steps: int, ball_points: int, threads: int) -> list[dict]:
    """Each method in a child process (its own peak memory); a failed child gives a row with its error."""
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for method in methods:
        models = random_set_of(method)
        cmd = [sys.executable, __file__, "--one", method, "--models", models, "--size", str(size),
               "--vae-size", str(vae_size), "--steps", str(steps), "--ball-points", str(ball_points),
               "--threads", str(threads)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(ROW_PREFIX)]
        if proc.returncode == 0 and lines:
            row = json.loads(lines[-1][len(ROW_PREFIX):])
        else:
            row = {"method": method, "models": models, "error": f"exit {proc.returncode}: {proc.stderr[-3000:]}"}
        row["process_seconds"] = time.perf_counter() - t0
        rows.append(row)
        summary = row.get("error") or (f"{row['seconds_per_step']:.2f} s/step, peak RSS {row['peak_rss_mb'] / 1024:.2f} GiB, "
                                       f"load {row['load_seconds']:.1f} s")
        print(f"{method:<24} {models:<12} {summary}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--size", type=int, default=64, help="render size in px (the paper: 1024)")
    p.add_argument("--vae-size", type=int, default=64, help="VAE input size in px (the paper: 512)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--ball-points", type=int, default=4096, help="initial Gaussians (the paper's ball: ~100k)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each method's process")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one method, a JSON row on stdout
    p.add_argument("--models", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        row = run_one(args.one, args.models, args.size, args.vae_size, args.steps, args.ball_points)
        print(ROW_PREFIX + json.dumps(row), flush=True)
        return 0

    from generators.io import atomic_write_json

    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"error: unknown method(s) {', '.join(unknown)} (known: {', '.join(METHODS)})", file=sys.stderr)
        return 2
    for models in dict.fromkeys(random_set_of(m) for m in methods):  # build once, outside the timings
        from generators.models.loader import _embedded_root
        from generators.models.spec import load_set_spec

        t0 = time.perf_counter()
        _embedded_root(load_set_spec(models))
        print(f"{models}: ready in {time.perf_counter() - t0:.1f} s (built now if that is minutes)", flush=True)
    t0 = time.perf_counter()
    rows = run_all(methods, args.size, args.vae_size, args.steps, args.ball_points, args.threads)
    atomic_write_json(args.out, {
        "command": "PYTHONPATH=. python tests/perf/fullsize_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": f"{os.cpu_count()}-core CPU", "platform": platform.platform(), "torch_threads": args.threads,
        "load_average": os.getloadavg(), "total_seconds": time.perf_counter() - t0, "rows": rows,
    })
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
