"""Gradient agreement of half precision against fp32, per method, on the tiny set on CPU (not a test).

    PYTHONPATH=. python tests/perf/precision_agreement.py [--precisions bf16 fp16] [--steps 2]
    PYTHONPATH=. python tests/perf/precision_agreement.py --device cuda   # -> precision_cuda.json

Each method runs its first `steps` optimisation steps as the loop runs them
(generators/precision_check.py: a ball of 300 Gaussians, 2 views of 32 px, 64 px VAE input, no
densification, the filter's gamma raised so every view is kept), once in fp32 and once in each
half precision with the networks in that dtype under autocast. Per step it records the cosine of
the latent gradient, of the Gaussians' gradients (through the VAE-encoder backward) and of the
trainable part's gradients against fp32, the tensors whose gradient the half precision zeroed,
and (fp16) whether the loss scaler skipped the step for an overflow (its first steps at the initial
scale 2^16 do on the tiny set; after a skipped step the two runs' Gaussians differ, so later
cosines compare different states). A second table shows what fp16's loss scaling prevents:
anchords-ipa-finetune with gradients ~1e-6 (SMALL_GRADIENTS), with and without the scaler.
Writes results/perf/precision_cpu.json atomically (tests/test_precision.py asserts the bounds).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from generators.io import atomic_write_json
from generators.methods import method_names
from generators.precision_check import SMALL_GRADIENTS, TINY_OVERRIDES, tiny_agreement

RESULTS = Path(__file__).resolve().parents[2] / "results" / "perf"


def _row(agreement: dict) -> str:
    cos = {k: agreement[f"{k}_cosine"] for k in ("latent", "gaussians", "trainer")}
    return "  ".join(f"{k} {'-' if v is None else f'{v:.5f}'}" for k, v in cos.items()) + \
        f"  zeroed {len(agreement['zeroed'])}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    parser.add_argument("--methods", nargs="+", default=method_names())
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=None, help="default: results/perf/precision_<device>.json")
    args = parser.parse_args()
    out = args.out or RESULTS / f"precision_{args.device}.json"
    torch.set_num_threads(args.threads)

    results: dict = {}
    for method in args.methods:
        results[method] = {}
        for precision in args.precisions:
            t0 = time.perf_counter()
            steps = tiny_agreement(method, precision, args.steps, device=args.device)
            results[method][precision] = steps
            first = steps[0]
            print(f"{method:32s} {precision}: {_row(first)}  skipped {[s['skipped'] for s in steps]}  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    underflow = {}
    for scaling in (True, False):
        steps = tiny_agreement("anchords-ipa-finetune", "fp16", args.steps, loss_scaling=scaling,
                               device=args.device, **SMALL_GRADIENTS)
        underflow["scaled" if scaling else "unscaled"] = steps
        print(f"fp16 small gradients, loss scaling {scaling}: {_row(steps[0])}", flush=True)
    atomic_write_json(out, {
        "benchmark": f"cosine of half-precision gradients against fp32, first optimisation steps, tiny set, {args.device}",
        "command": "PYTHONPATH=. python tests/perf/precision_agreement.py"
                   + (f" --device {args.device}" if args.device != "cpu" else ""),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "settings": {"models": "tiny", "steps": args.steps, "overrides": TINY_OVERRIDES},
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "threads": args.threads,
        "load_average": os.getloadavg()[0], "torch": torch.__version__,
        "methods": results,
        "fp16_small_gradients": {"method": "anchords-ipa-finetune", "overrides": SMALL_GRADIENTS, **underflow},
    })
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
