"""FLOPs per optimisation step of every method at the paper's settings, on the full-size networks (not a test).

    PYTHONPATH=. python tests/perf/bench_flops.py [--methods sds,anchords-ipa]

Counted with PyTorch's FLOP counter on the real guidance code path, with the networks on the meta
device (generators/flops.py): seconds on a CPU, no weights, no memory. Each method is counted on
its preset's model set (SD 1.5 or SD 2.1 sizes) and compared with `sds` on the same set. Writes
results/perf/flops.json atomically and the Markdown table between the flops markers of
results/perf/README.md, and prints the table.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from pathlib import Path

import torch

from generators.flops import count_method_step
from generators.io import atomic_write_json, atomic_write_text
from generators.methods import method_names

OUT_DIR = Path("results/perf")
README_START, README_END = "<!-- flops table: start -->", "<!-- flops table: end -->"

# bf16 dense tensor-core peaks (vendor datasheets list 1,979 TFLOP/s "with sparsity"; dense is half)
PEAK_TFLOPS = {"H100 SXM": 1979 / 2, "H200": 1979 / 2}

# the account's columns: (header, module row, phase)
COLUMNS = [
    ("UNet fwd", "unet", "forward"),
    ("UNet bwd", "unet", "backward"),
    ("ControlNet", "controlnet", "both"),
    ("image enc.", "image_encoder", "both"),
    ("VAE enc. fwd", "vae_encoder", "forward"),
    ("VAE enc. bwd", "vae_encoder", "backward"),
    ("VAE decode", "vae_decode", "both"),
    ("LoRA", "lora", "both"),
]


def row(c, sds_total: float, seconds: float) -> dict:
    """One table row of a counted step `c` (a StepFlops)."""
    return {
        "method": c.method, "models": c.models, "settings": c.settings,
        "forward_flops": c.forward, "backward_flops": c.backward, "rasterizer_flops_estimate": c.rasterizer,
        "total_flops": c.total, "ratio_to_sds_same_set": c.total / sds_total,
        "ms_at_peak": {gpu: 1e3 * c.total / (peak * 1e12) for gpu, peak in PEAK_TFLOPS.items()},
        "columns_tflop": {h: c.module(name, phase) / 1e12 for h, name, phase in COLUMNS},
        "other_tflop": (c.module("other") + c.module("text_encoder")) / 1e12,
        "count_seconds": seconds,
    }


def account(methods: list[str]) -> list[dict]:
    """A row per method, each against sds on the same networks; sds of a set no row covers is added."""
    rows, sds = [], {}
    for method in methods:
        t0 = time.perf_counter()
        c = count_method_step(method)
        if c.models not in sds:
            sds[c.models] = c if method == "sds" else count_method_step("sds", c.models)
        rows.append(row(c, sds[c.models].total, time.perf_counter() - t0))
        print(f"{method:<34} {c.total / 1e12:7.2f} TFLOP  {rows[-1]['ratio_to_sds_same_set']:.3f}x sds", flush=True)
    covered = {(r["method"], r["models"]) for r in rows}
    rows += [row(c, c.total, 0.0) for models, c in sds.items() if ("sds", models) not in covered]
    return rows


def markdown(rows: list[dict]) -> str:
    head = ["method", "set", *(h for h, _, _ in COLUMNS), "raster (est.)", "total", "x sds",
            *(f"ms @ {g}" for g in PEAK_TFLOPS)]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    for r in rows:
        cells = [r["method"], r["models"], *(f"{r['columns_tflop'][h]:.2f}" for h, _, _ in COLUMNS),
                 f"{r['rasterizer_flops_estimate'] / 1e12:.2f}", f"{r['total_flops'] / 1e12:.2f}",
                 f"{r['ratio_to_sds_same_set']:.3f}", *(f"{r['ms_at_peak'][g]:.1f}" for g in PEAK_TFLOPS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme_table(table: str, readme: Path) -> None:
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{readme}: no {README_START} ... {README_END} section to rewrite")
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.S)
    atomic_write_text(readme, pattern.sub(lambda _: f"{README_START}\n{table}\n{README_END}", text))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(method_names()))
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(method_names()))
    if unknown:
        print(f"unknown method(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    rows = account(methods)
    table = markdown(rows)
    print("\n" + table)
    atomic_write_json(args.out / "flops.json", {
        "what": "FLOPs of one optimisation step (guidance forward, loss backward, trainer step), counted with "
                "torch.utils.flop_counter formulas on meta-device full-size networks; rasterizer estimated",
        "torch": torch.__version__, "platform": platform.platform(),
        "peak_bf16_dense_tflops": PEAK_TFLOPS, "rows": rows,
    })
    if args.out == OUT_DIR and set(methods) == set(method_names()):
        write_readme_table(table, args.out / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
