"""What a job costs in GPU-hours, before it runs: `make plan JOB=...` / `python -m harness.cost`.

    python -m harness.cost --job jobs/paper-table1.yaml [--device cuda] [--gpu "H100 SXM"]
    python -m harness.cost --method anchords-ipa-finetune --prompts t3bench --seeds 0,1,2

For each run group of the job: runs x steps, and seconds per step from a measurement when there
is one (`results/perf/methods_<set>_<device>.json`, written by tests/perf/bench_methods.py; a real
set reads its random-weight twin, e.g. sd15 -> sd15-random: same architecture, same FLOPs). Where
nothing was measured, the FLOP count of one step (`results/perf/flops.json`, tests/perf/
bench_flops.py) at the GPU's bf16 dense peak gives a lower bound, labelled as such: real steps
also pay for memory traffic, the rasterizer and Python, so the bound is optimistic by a factor that
only a measurement can tell. Generation only: the Shap-E initialisation, output rendering and
scoring are not counted.

Nothing is run or written; no torch import beyond resolving the method configs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from generators.errors import UserError, report_error

PERF_DIR = Path(__file__).resolve().parents[1] / "results" / "perf"
# a real model set is timed through its random-weight twin of the same architecture
RANDOM_TWIN = {"sd15": "sd15-random", "sd21": "sd21-random"}
# published wall-clock times of one run, quoted beside a FLOP bound (not used in any sum)
PUBLISHED_MINUTES_PER_RUN = ("GaussianDreamer about 15 min on one GPU (its README; 25 in its first preprint); "
                             "AnchorDS about 25 min (SDS) and 30 min (+ finetune), GPU not named")
# the FLOP table counts the real sets under these names
FLOP_SET = {"sd15-random": "sd15", "sd21-random": "sd21"}


@dataclass
class GroupCost:
    label: str
    method: str
    models: str
    runs: int
    steps: int
    seconds_per_step: Optional[float]  # measured, or None
    source: str  # where seconds_per_step (or the bound) comes from
    lower_bound_seconds_per_step: Optional[float] = None  # FLOPs at peak, when nothing was measured

    @property
    def gpu_hours(self) -> Optional[float]:
        sps = self.seconds_per_step if self.seconds_per_step is not None else self.lower_bound_seconds_per_step
        return None if sps is None else self.runs * self.steps * sps / 3600.0


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def measured_seconds_per_step(method: str, models: str, device: str, perf_dir: Path) -> Optional[tuple[float, str]]:
    """Median seconds per step of `method` on `models` (or its random twin) on `device`, if measured."""
    for name in (models, RANDOM_TWIN.get(models)):
        if name is None:
            continue
        path = perf_dir / f"methods_{name}_{device}.json"
        data = _read_json(path)
        for row in (data or {}).get("rows", []):
            if isinstance(row, dict) and row.get("method") == method and isinstance(row.get("seconds_per_step"), (int, float)):
                where = data.get("device", device)
                return float(row["seconds_per_step"]), f"measured on {where} ({path.name})"
    return None


def flop_lower_bound(method: str, models: str, gpu: str, perf_dir: Path) -> Optional[tuple[float, str]]:
    """Seconds per step at the GPU's bf16 dense peak, from the FLOP table (None if not counted)."""
    data = _read_json(perf_dir / "flops.json")
    if data is None:
        return None
    peak = (data.get("peak_bf16_dense_tflops") or {}).get(gpu)
    if not isinstance(peak, (int, float)) or peak <= 0:
        return None
    want = FLOP_SET.get(models, models)
    for row in data.get("rows", []):
        if isinstance(row, dict) and row.get("method") == method and row.get("models") == want:
            return float(row["total_flops"]) / (peak * 1e12), f"lower bound: FLOPs at {gpu} bf16 peak ({peak:g} TFLOP/s)"
    return None


def job_costs(job, device: str = "cuda", gpu: str = "H100 SXM", perf_dir: Path = PERF_DIR) -> list[GroupCost]:
    """One GroupCost per run group of the job."""
    from generators.methods import resolve_run_config
    from harness.plan import plan_job

    specs = plan_job(job)
    costs = []
    for group in job.groups():
        runs = [s for s in specs if s.label == group.name]
        if not runs:
            continue
        cfg = resolve_run_config(group.method, prompt="", seed=0, models=group.models, overrides=group.overrides)
        measured = measured_seconds_per_step(group.method, cfg.models, device, perf_dir)
        cost = GroupCost(group.name, group.method, cfg.models, len(runs), cfg.steps, None, "no measurement, no FLOP count")
        if measured is not None:
            cost.seconds_per_step, cost.source = measured
        else:
            bound = flop_lower_bound(group.method, cfg.models, gpu, perf_dir)
            if bound is not None:
                cost.lower_bound_seconds_per_step, cost.source = bound
        costs.append(cost)
    return costs


def format_costs(job_name: str, costs: list[GroupCost]) -> str:
    lines = [f"job {job_name}: generation cost per run group (GPU-hours; init, outputs and scoring not counted)", "",
             "| run group | model set | runs | steps | s/step | GPU-h | from |", "| --- | --- | --- | --- | --- | --- | --- |"]
    total, any_bound = 0.0, False
    for c in costs:
        if c.seconds_per_step is not None:
            sps = f"{c.seconds_per_step:.3f}"
        elif c.lower_bound_seconds_per_step is not None:
            sps, any_bound = f">= {c.lower_bound_seconds_per_step:.4f}", True
        else:
            sps = "?"
        hours = c.gpu_hours
        total += hours or 0.0
        gh = "?" if hours is None else (f">= {hours:.2f}" if c.seconds_per_step is None else f"{hours:.2f}")
        lines.append(f"| {c.label} | {c.models} | {c.runs} | {c.steps} | {sps} | {gh} | {c.source} |")
    unknown = [c.label for c in costs if c.gpu_hours is None]
    lines += ["", f"total: {'>= ' if any_bound else ''}{total:.2f} GPU-hours"
              + (f" (unknown for {', '.join(unknown)})" if unknown else "")]
    if any_bound:
        lines.append("'>=' rows: no step time measured on this device yet; the FLOP bound assumes 100% of peak. "
                     "Measure with `make gpu-check` (writes results/perf/methods_<set>_cuda.json).")
        lines.append(f"For scale, published wall times per run: {PUBLISHED_MINUTES_PER_RUN}.")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    from harness.benchmark import Settings, build_job
    from harness.cli import _seeds

    p = argparse.ArgumentParser(prog="python -m harness.cost",
                                description="GPU-hours of a job's generation, from measured step times or a FLOP bound")
    p.add_argument("--job", help="a job file (jobs/*.yaml)")
    p.add_argument("--method", dest="methods", action="append", default=[], help="a method (repeatable)")
    p.add_argument("--prompts", help="suite name or .txt file (default: the job's, else t3bench)")
    p.add_argument("--seeds", type=_seeds, help="comma-separated seeds")
    p.add_argument("--models", help="model set for every run")
    p.add_argument("--limit", type=int, help="only the first N prompts of each category")
    p.add_argument("--steps", type=int, help="override the steps of every run")
    p.add_argument("--device", default="cuda", help="device of the step-time measurements (default cuda)")
    p.add_argument("--gpu", default="H100 SXM", help="GPU whose peak bounds unmeasured rows (see results/perf/flops.json)")
    args = p.parse_args(argv)
    try:
        job = build_job(Settings(job=args.job, methods=[m for a in args.methods for m in a.split(",") if m],
                                 prompts=args.prompts, seeds=args.seeds, models=args.models, limit=args.limit,
                                 steps=args.steps))
        print(format_costs(job.name, job_costs(job, args.device, args.gpu)))
    except UserError as e:
        return report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
