"""`make demo` / `python -m harness demo`: ToyBench on this machine's CPU, generated, scored, reported.

By default the demo runs jobs/toybench-demo.yaml: sds, sds-bridge and AnchorDS-IPA (+ filter,
+ finetune) on ToyWorld's self-trained prior (model set `toy`) over 2 one-object and 2 two-object
captions, scores the runs with ToyWorld's judge and prior (metric set `toybench`) and writes the
report (results/demo/toybench-demo/report.md). Every step goes through the same harness as a real
benchmark: run store, locks, resume; running it again reuses what is finished.

`--smoke` runs jobs/smoke.yaml instead: the embedded `tiny` random models on one prompt per
T3Bench category, the whole real-model pipeline (Shap-E init, VAE, ...) without meaningful shapes.
Flags replace the job's settings (one --method instead of its methods, and so on).
"""

from __future__ import annotations

import time
from pathlib import Path

from generators.errors import UserError

JOBS = Path(__file__).resolve().parents[1] / "jobs"
TOYBENCH_JOB = JOBS / "toybench-demo.yaml"
SMOKE_JOB = JOBS / "smoke.yaml"
TOYBENCH_METRICS = "toybench"

DISCLAIMER = (
    "Note: the `tiny` model set is made of tiny RANDOM networks of the real architecture families. "
    "It exercises the whole pipeline (models, Shap-E init, rendering, guidance, densification, "
    "outputs) but makes no meaningful shapes: the demo shows the pipeline, not quality."
)
FULL_REPORT = "results/toybench-control-prior22k/report.md"  # the committed full-suite report (3 seeds, each method at its dev CFG)
DEMO_NOTICE = (
    "**AN ILLUSTRATION, NOT A RESULT.** This demo runs {prompts} prompts x {seeds} seed(s): it shows what the "
    "methods do (pictures, per-view judgements) and how the report reads, not which method is better. Its "
    "intervals are wide and it makes no comparison with fewer than 5 prompts in common. For results, see the "
    "committed full-suite report, " + FULL_REPORT + "{made_with}, and docs/toybench.md."
)
TOY_NOTE = (
    "ToyWorld is a world of coloured cubes, spheres, cones and tori with a 2M-parameter prior trained "
    "on CPU: the methods' differences there are real but say nothing directly about Stable Diffusion "
    "(generators/toyworld/README.md)."
)


def _made_with(report: Path) -> str:
    """' (made with <model sets>)' as the committed report's protocol note names them: the demo runs
    the set's current prior, which need not be the one the full-suite report was made with."""
    try:
        text = report.read_text(encoding="utf-8")
    except OSError:
        return ""
    for line in text.splitlines():
        if "generation model sets: " in line:
            return " (made with " + line.split("generation model sets: ", 1)[1].strip() + ")"
    return ""


def _settings(args, job_file: Path):
    from harness.benchmark import Settings
    from harness.jobs import load_job

    # replace_plan: the demo's report is of the settings just given (a changed --steps or --suite
    # replaces the demo job's plan; its earlier runs stay in the run store)
    settings = Settings(job=str(job_file), name=None, prompts=args.suite, models=args.models, steps=args.steps,
                        seeds=[args.seed] if args.seed is not None else None, results=args.out, replace_plan=True)
    if args.method:
        job = load_job(job_file)
        # one method instead of the job's: keep the job's settings, swap its methods
        settings.job = None
        settings.name = f"{job.name}-{args.method}"
        settings.methods = [args.method]
        settings.prompts = args.suite or job.prompts
        settings.models = args.models or job.models
        settings.overrides = dict(job.overrides)
        settings.seeds = settings.seeds or job.seeds
        settings.executor = job.executor.kind
    return settings


def main(args) -> int:
    """`args`: the parsed `demo` subcommand (smoke, method, models, suite, out, steps, seed)."""
    from harness.benchmark import benchmark
    from harness.status import job_status
    from harness.store import read_json

    job_file = SMOKE_JOB if args.smoke else TOYBENCH_JOB
    t0 = time.perf_counter()
    job, specs, _ = benchmark(_settings(args, job_file))
    if not specs:
        raise UserError("the demo planned no runs")
    st = job_status(specs, args.out, job.executor.max_attempts)
    print(f"\ngenerated in {time.perf_counter() - t0:.0f} s. Each run folder holds gaussians.ply, views.png, "
          f"turntable.gif, train_log.parquet, config.yaml, status.json:")
    for spec in specs:
        status = read_json(spec.run_dir(args.out) / "status.json") or {}
        print(f"  {status.get('state', 'pending'):<8} {spec.run_dir(args.out)}")
    if all(sp.models == "tiny" for sp in specs):
        print("\n" + DISCLAIMER)
        return 0 if st.complete else 1
    if not all(sp.models == "toy" for sp in specs):
        print("\n(runs on other model sets than `toy`: not scored; use `python -m harness eval` with their metric set)")
        return 0 if st.complete else 1
    from harness.evaluate import evaluate_job
    from harness.report import build_report

    t1 = time.perf_counter()
    code = evaluate_job(job.name, args.out, models=TOYBENCH_METRICS)
    print(f"scored in {time.perf_counter() - t1:.0f} s")
    notice = DEMO_NOTICE.format(prompts=len({sp.prompt for sp in specs}), seeds=len({sp.seed for sp in specs}),
                                made_with=_made_with(Path(__file__).resolve().parents[1] / FULL_REPORT))
    try:
        report_md = build_report(job.name, specs, args.out, notice=notice)["report"]
    except UserError as e:
        print(f"error: {e}")
        return e.exit_code
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s. Report: {report_md}\n{notice}\n{TOY_NOTE}")
    return code if st.complete else 1
