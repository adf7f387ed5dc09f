"""`python -m harness`: benchmark, status, demo.

    python -m harness benchmark --method anchords-ipa-finetune              # over the 300 T3Bench prompts
    python -m harness benchmark --job jobs/paper-table1.yaml --executor slurm
    python -m harness benchmark --job jobs/smoke.yaml --dry-run             # the plan, nothing run
    python -m harness status [JOB]                                          # done/running/failed/pending
    python -m harness eval JOB [--models t3bench] [--executor slurm]        # score the job's finished runs
    python -m harness report JOB                                            # tables, figures, gaps
    python -m harness demo [--smoke]                                        # ToyBench (or the tiny smoke job) on CPU

Errors a user can cause print one message and exit with code 2; a benchmark exits 0 when every
run of its job is done, 1 otherwise; an eval exits 0 when every generated run is scored.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from generators.errors import UserError, report_error
from generators.untrusted import path_argument

REPO_JOBS = Path(__file__).resolve().parents[1] / "jobs"


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must look like 0,1,2 (got {text!r})") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return seeds


def _override_arguments(p: argparse.ArgumentParser, what: str, example: str, with_set: bool = True) -> None:
    """Overrides besides --set: bare KEY=VALUE arguments, and --sets "K=V K=V" (one string, split
    as a shell would: what `make benchmark SET="..."` passes, from the environment, never spliced)."""
    if with_set:
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help=f"override {what}, e.g. --set {example} (repeatable)")
    p.add_argument("--sets", dest="override_string", default="", metavar='"KEY=VALUE ..."',
                   help="several overrides in one argument, separated by spaces (shell quoting for values with spaces)")
    p.add_argument("bare_overrides", nargs="*", metavar="KEY=VALUE", help=f"overrides without --set, e.g. {example}")


def _all_overrides(args) -> list[str]:
    """--set, --sets and bare KEY=VALUE overrides, in that order; a bare argument without '=' is an error."""
    import shlex

    try:
        from_string = shlex.split(args.override_string or "")
    except ValueError as e:
        raise UserError(f"--sets {args.override_string!r}: {e}") from None
    out = [*args.overrides, *from_string, *args.bare_overrides]
    bad = [o for o in out if "=" not in o]
    if bad:
        raise UserError(f"not an override (KEY=VALUE): {', '.join(map(repr, bad))}")
    return out


def _local_executor_arguments(p: argparse.ArgumentParser) -> None:
    """--workers / --threads: the local executor's parallelism, e.g. one worker of one thread while a
    training shares the CPU."""
    p.add_argument("--workers", type=int, help="local executor: runs at once (default: the job file's, else 1)")
    p.add_argument("--threads", type=int,
                   help="local executor: torch threads of each run (default: the job file's, else cores / workers)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("benchmark", help="run methods over a prompt suite (resumes; skips finished runs)",
                       description="Plan a job (methods x prompts x seeds, from a job file and/or flags) and run it "
                                   "on an executor (local, ray, slurm). Resumable: finished runs are skipped, "
                                   "interrupted runs resume from their last checkpoint.")
    b.add_argument("--job", help="a job file (jobs/*.yaml); the flags below override its settings")
    b.add_argument("--method", dest="methods", action="append", default=[],
                   help="a method (repeatable; comma-separated lists work too); with --job: only these groups")
    b.add_argument("--name", help="job name (folder RESULTS/<name>/); default: the job file's name or the methods")
    b.add_argument("--prompts", help="suite name (t3bench, t3bench-single, demo, ...) or a .txt file; default t3bench")
    b.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2 (default 0)")
    b.add_argument("--models", help="model set for every run (default: each method's own)")
    b.add_argument("--executor", help="local | ray | slurm (default: the job file's, else local)")
    b.add_argument("--limit", type=int, help="only the first N prompts of each category")
    b.add_argument("--steps", type=int, help="override the optimisation steps of every run (a new run id)")
    _override_arguments(b, "a config field of every run", "guidance.guidance_scale=50")
    b.add_argument("--max-attempts", type=int, help="failures before a run is given up (default 3)")
    _local_executor_arguments(b)
    b.add_argument("--results", type=path_argument, default=Path("results"), help="results folder (default results/)")
    b.add_argument("--force", action="store_true",
                   help="re-run finished runs (the old directories are moved aside, never deleted)")
    b.add_argument("--retry-failed", action="store_true", help="retry runs that reached max_attempts failures")
    b.add_argument("--other-code", choices=["reuse", "rerun"], default="reuse",
                   help="finished runs made by another code version (git commit; `status` lists them): reuse "
                        "them as done (default), or rerun them (the old folders are moved aside, never deleted)")
    b.add_argument("--dry-run", action="store_true", help="print the plan and exit; nothing is run or written")
    b.add_argument("--no-wait", action="store_true", help="slurm: submit and return (follow with `status`)")
    b.add_argument("--replace-plan", action="store_true",
                   help="let this job name's saved plan change its runs (default: refuse, exit 2)")
    b.add_argument("--workload", default=None, help=argparse.SUPPRESS)  # tests: module:function per run

    s = sub.add_parser("status", help="done / running / failed / pending per run group and category",
                       description="Read the run folders of a job (or of every job in RESULTS): counts per run "
                                   "group and category, each running run at step k/N with its ETA, the job's ETA, "
                                   "failures with reasons, and finished runs made by another code version.")
    s.add_argument("job", nargs="?", help="a job name (as run) or a job file; default: every job in RESULTS")
    s.add_argument("--job", dest="job_opt", help=argparse.SUPPRESS)
    s.add_argument("--results", type=path_argument, default=Path("results"))

    e = sub.add_parser("eval", help="score the finished runs of a job (resumable: scored stages are kept)",
                       description="Score every finished run of a job with a metric model set (T3Bench quality, "
                                   "alignment, CLIP; or ToyBench). Resumable: stages already scored with the same "
                                   "settings are kept.")
    e.add_argument("job", help="job name (saved plan in RESULTS/<job>/, or jobs/<job>.yaml) or a job file")
    e.add_argument("--models", default="t3bench", help="metric model set (default t3bench; tiny for CPU tests)")
    e.add_argument("--stages", default=None, help="comma-separated subset of quality,alignment,clip,toybench (default: the metric set's stages)")
    e.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="evaluation config override, e.g. quality.width=256 (repeatable)")
    _override_arguments(e, "an evaluation config field", "quality.width=256", with_set=False)
    e.add_argument("--retry-failed", action="store_true",
                   help="retry runs whose scoring failed (every eval invocation already gives each unscored run "
                        "max_attempts new tries: accepted so `make eval RETRY_FAILED=1` reads like benchmark's)")
    e.add_argument("--force", action="store_true", help="recompute the requested stages even if scored")
    e.add_argument("--results", type=path_argument, default=Path("results"), help="results folder (default results/)")
    e.add_argument("--executor", help="local | ray | slurm (default: the job's executor)")
    e.add_argument("--no-wait", action="store_true", help="slurm: submit and return (eval again to see the scores)")
    _local_executor_arguments(e)
    e.add_argument("--workload", default=None, help=argparse.SUPPRESS)  # tests: module:function per run

    r = sub.add_parser("report", help="scores.parquet, report.md/.html, figures and grids of a job",
                       description="Collect every planned run's scores into scores.parquet and write report.md and "
                                   "the benchmark browser (report.html, ranked.html, one page per prompt with "
                                   "videos and a 3D viewer); opens from disk, no server, no GPU.")
    r.add_argument("job", help="job name or job file")
    r.add_argument("--results", type=path_argument, default=Path("results"), help="results folder (default results/)")
    r.add_argument("--baseline", default="sds", help="label or method the others are paired against (default sds)")
    r.add_argument("--from-scores", nargs="?", const="", default=None, metavar="JOB[,JOB...]",
                   help="rebuild from RESULTS/<job>/scores.parquet (no run folders), or from these jobs' scores together")
    r.add_argument("--replace-scores", action="store_true",
                   help="let a report from the run folders replace scores whose run folders are not here")

    d = sub.add_parser("demo", help="ToyBench on CPU: generate, score, report (jobs/toybench-demo.yaml)",
                       description="Run the ToyBench demo on CPU: 5 methods on the ToyWorld prior over 4 captions, "
                                   "scored by ToyWorld's judge and reported (or, with --smoke, the tiny-model job).")
    d.add_argument("--smoke", action="store_true",
                   help="the tiny-model smoke job instead (jobs/smoke.yaml: the real-model pipeline, no meaningful shapes)")
    d.add_argument("--method", default=None, help="one method instead of the job's")
    d.add_argument("--models", default=None, help="model set (default: the job's: toy, or tiny with --smoke)")
    d.add_argument("--suite", default=None, help="prompt suite name or .txt path (default: the job's)")
    d.add_argument("--out", type=path_argument, default=Path("results/demo"), help="results folder (default results/demo)")
    d.add_argument("--steps", type=int, default=None)
    d.add_argument("--seed", type=int, default=None)
    return p


def cmd_benchmark(args) -> int:
    from generators.config import ConfigError, parse_dotted
    from harness.benchmark import Settings, benchmark
    from harness.status import job_status, render_status
    from harness.store import USER_ERROR
    from harness.workloads import DEFAULT_WORKLOAD

    try:
        overrides = parse_dotted(_all_overrides(args))
    except ConfigError as e:
        raise UserError(str(e)) from None
    methods = [m for item in args.methods for m in item.split(",") if m]
    settings = Settings(job=args.job, methods=methods, name=args.name, prompts=args.prompts, seeds=args.seeds,
                        models=args.models, executor=args.executor, limit=args.limit, steps=args.steps,
                        max_attempts=args.max_attempts, workers=args.workers, threads=args.threads,
                        overrides=overrides, results=args.results,
                        force=args.force, retry_failed=args.retry_failed, other_code=args.other_code,
                        dry_run=args.dry_run, wait=not args.no_wait, workload=args.workload or DEFAULT_WORKLOAD,
                        replace_plan=args.replace_plan)
    job, specs, outcomes = benchmark(settings)
    if args.dry_run:
        return 0
    print(f"outcomes: {dict(sorted(outcomes.items())) or 'nothing to run'}")
    if not settings.wait:
        return 0
    st = job_status(specs, args.results, job.executor.max_attempts)
    render_status(st, f"{job.name} ({args.results})")
    if st.needs_user or outcomes.get(USER_ERROR):  # a user error or a corrupt file: see the messages
        return 2
    return 0 if st.complete else 1


def _status_targets(args) -> list[tuple[str, dict, list]]:
    """[(title, job dict, specs)] for the job named, the job file given, or every job in RESULTS."""
    from harness.benchmark import JOB_FILE, PLAN_FILE, load_plan
    from harness.jobs import check_job_name, job_to_dict, load_job
    from harness.plan import plan_job

    target = args.job or args.job_opt
    results: Path = args.results
    if target is None:
        dirs = sorted(p.parent for p in results.glob(f"*/{PLAN_FILE}") if (p.parent / JOB_FILE).is_file())
        if not dirs:
            raise UserError(f"no jobs in {results} yet (run `python -m harness benchmark` first)")
        targets = []
        for d in dirs:  # one unreadable job does not hide the others
            try:
                targets.append((d.name, *load_plan(d)))
            except UserError as e:
                print(f"error: job {d.name}: {e}", file=sys.stderr)
        return targets
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        job = load_job(path)
        return [(job.name, job_to_dict(job), plan_job(job))]
    check_job_name(target)  # a name, never a path: `../x` would read and write outside RESULTS
    if (results / target / PLAN_FILE).is_file():
        return [(target, *load_plan(results / target))]
    if (REPO_JOBS / f"{target}.yaml").is_file():
        job = load_job(REPO_JOBS / f"{target}.yaml")
        return [(job.name, job_to_dict(job), plan_job(job))]
    raise UserError(f"no job {target!r}: not a job file, not a job in {results}, not jobs/{target}.yaml")


def cmd_status(args) -> int:
    from harness.status import job_status, render_status

    t0 = time.perf_counter()
    for title, job, specs in _status_targets(args):
        st = job_status(specs, args.results, job.get("executor", {}).get("max_attempts", 3))
        render_status(st, f"{title} ({args.results})")
    print(f"({time.perf_counter() - t0:.2f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from generators.cli import parse_args_with_overrides
    from generators.signals import sigterm_as_interrupt

    args = parse_args_with_overrides(_parser(), argv)
    sigterm_as_interrupt()  # `kill`: runs stop resumable and the message below is printed
    try:
        if args.command == "benchmark":
            return cmd_benchmark(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "eval":
            from harness.evaluate import evaluate_job

            from harness.workloads import EVAL_WORKLOAD

            return evaluate_job(args.job, args.results, models=args.models, stages=args.stages,
                                device=args.device, overrides=_all_overrides(args), force=args.force,
                                executor=args.executor, workers=args.workers, threads=args.threads,
                                wait=not args.no_wait,
                                workload=args.workload or EVAL_WORKLOAD)
        if args.command == "report":
            from harness.report import main as report

            return report(["--job", args.job, "--results", str(args.results), "--baseline", args.baseline]
                          + ([f"--from-scores={args.from_scores}"] if args.from_scores is not None else [])
                          + (["--replace-scores"] if args.replace_scores else []))
        from harness.demo import main as demo

        return demo(args)
    except UserError as e:
        return report_error(e)
    except BrokenPipeError:  # `... | head`: the reader left; nothing to report
        return 0
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume (finished runs are kept)", file=sys.stderr)
        return 130
