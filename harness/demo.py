"""`make demo` / `python -m harness demo`: the smoke job (jobs/smoke.yaml) on this machine.

The smoke job runs methods on the embedded `tiny` models over the demo suite (one prompt per
T3Bench category) through the same harness as a real benchmark: run store, locks, resume.
Flags replace the smoke job's settings (one --method instead of its methods, and so on).
"""

from __future__ import annotations

import time
from pathlib import Path

from generators.errors import UserError

SMOKE_JOB = Path(__file__).resolve().parents[1] / "jobs" / "smoke.yaml"

DISCLAIMER = (
    "Note: the `tiny` model set is made of tiny RANDOM networks of the real architecture families. "
    "It exercises the whole pipeline (models, Shap-E init, rendering, guidance, densification, "
    "outputs) but makes no meaningful shapes: the demo shows the pipeline, not quality."
)


def main(args) -> int:
    """`args`: the parsed `demo` subcommand (method, models, suite, out, steps, seed)."""
    from harness.benchmark import Settings, benchmark
    from harness.status import job_status
    from harness.store import read_json

    settings = Settings(job=str(SMOKE_JOB), name="demo", prompts=args.suite, models=args.models,
                        steps=args.steps, seeds=[args.seed] if args.seed is not None else None,
                        results=args.out, executor="local")
    if args.method:
        from harness.jobs import load_job

        job = load_job(SMOKE_JOB)
        # one method instead of the smoke job's: keep the job's settings, swap its methods
        settings.job = None
        settings.methods = [args.method]
        settings.prompts = args.suite or job.prompts
        settings.models = args.models or job.models
        settings.overrides = dict(job.overrides)
        settings.seeds = settings.seeds or job.seeds
    t0 = time.perf_counter()
    job, specs, _ = benchmark(settings)
    st = job_status(specs, args.out, job.executor.max_attempts)
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s. Outputs (gaussians.ply, views.png, "
          f"turntable.gif, train_log.parquet, config.yaml, status.json):")
    for spec in specs:
        status = read_json(spec.run_dir(args.out) / "status.json") or {}
        print(f"  {status.get('state', 'pending'):<8} {spec.run_dir(args.out)}")
    if any(sp.models == "tiny" for sp in specs):
        print("\n" + DISCLAIMER)
    if not specs:
        raise UserError("the demo planned no runs")
    return 0 if st.complete else 1
