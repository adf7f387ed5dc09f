"""`python -m harness eval JOB`: score every finished run of a job, on the job's executors.

    python -m harness eval paper-table1 [--executor local|ray|slurm] [--models t3bench]
                                        [--stages quality,clip] [--set quality.width=256] [--force]

The evaluation of one run is one more workload (harness.workloads:evaluate) over the job's
RunSpecs, run by the same executors and worker as the generation: the eval settings travel in
WorkerOptions.evaluation (picklable, to Ray and SLURM alike), metric models load once per worker
process, and each run is scored under its own eval lock with its own eval_attempts.json, so the
generation bookkeeping (status.json, attempts.json, the run lock) is never touched.

Resumable: only runs that still miss a requested stage go to the executor, and metrics.json keeps
each stage as soon as it is scored. A stage counts as scored only when it holds a number (a judge
that gave no rating leaves a gap, as in the report). Runs not generated yet are listed, not scored;
runs scored with other settings are listed (re-score them with --force); runs with a corrupt file
(status.json, metrics.json, eval_attempts.json) are listed with the file and what to do, and the
others are scored. Exit code 0 when every generated run is scored, 1 otherwise; 2 for a user error
(raised before anything is written or submitted: bad settings, missing metric weights) or when a
run needs the user (a corrupt file, a run that cannot be read).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from generators.errors import UserError
from harness.jobs import EXECUTOR_KINDS, Job, apply_local_settings
from harness.plan import RunSpec
from harness.workloads import EVAL_WORKLOAD

LISTED = 5  # runs named per group of the summary (the rest are counted)


@dataclass
class EvalPlan:
    """Where each planned run stands for the requested stages."""

    not_generated: list = field(default_factory=list)  # [RunSpec]
    scored: list = field(default_factory=list)  # [RunSpec]: every requested stage done, same settings
    mismatched: list = field(default_factory=list)  # [(RunSpec, reason)]: scored with other settings
    todo: list = field(default_factory=list)  # [RunSpec]: generated, some stage missing
    corrupt: list = field(default_factory=list)  # [(RunSpec, message)]: a file of the run cannot be read
    no_score: list = field(default_factory=list)  # [(RunSpec, stages)]: every stage tried, some without a number

    @property
    def generated(self) -> int:
        return len(self.scored) + len(self.mismatched) + len(self.todo) + len(self.corrupt) + len(self.no_score)


def load_job_and_plan(job: str, results: Path) -> tuple[Job, list[RunSpec]]:
    """The job (with its executor settings) and its runs: a saved plan in RESULTS/<job>/, a job
    file, or jobs/<job>.yaml (as harness.report.resolve_job, keeping the Job)."""
    from harness.benchmark import JOB_FILE, PLAN_FILE, load_plan
    from harness.jobs import check_job_name, load_job, parse_job
    from harness.plan import plan_job

    path = Path(job)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        j = load_job(path)
        return j, plan_job(j)
    check_job_name(job)  # a name, never a path: `../x` would read and write outside RESULTS
    if (results / job / PLAN_FILE).is_file():
        data, specs = load_plan(results / job)
        return parse_job(data, str(results / job / JOB_FILE)), specs
    repo_job = Path(__file__).resolve().parents[1] / "jobs" / f"{job}.yaml"
    if repo_job.is_file():
        j = load_job(repo_job)
        return j, plan_job(j)
    raise UserError(f"no job {job!r}: not a job file, not a job in {results}, not jobs/{job}.yaml")


def plan_eval(specs: list[RunSpec], results: Path, ev) -> EvalPlan:
    """Sort the runs (each run directory once) by what the evaluation has to do with them."""
    from generators.errors import CorruptFileError
    from harness.store import EVAL_ATTEMPTS_FILE, Attempts, is_done
    from harness.workloads import eval_config, stages_to_score, stages_without_score

    cfg, set_name = eval_config(ev)
    plan = EvalPlan()
    seen: set[str] = set()
    for spec in specs:
        if spec.rel_dir in seen:  # two run groups with one config share one run
            continue
        seen.add(spec.rel_dir)
        run_dir = spec.run_dir(results)
        try:
            if not is_done(run_dir):
                plan.not_generated.append(spec)
                continue
            Attempts.read(run_dir, EVAL_ATTEMPTS_FILE)  # readable, or the run is reported here
            todo = stages_to_score(run_dir, cfg, set_name, ev.stages, ev.force_before)
            gaps = [] if todo else stages_without_score(run_dir, ev.stages)
        except CorruptFileError as e:
            plan.corrupt.append((spec, str(e)))
            continue
        except UserError as e:
            plan.mismatched.append((spec, str(e)))
            continue
        if gaps:
            plan.no_score.append((spec, gaps))
        else:
            (plan.todo if todo else plan.scored).append(spec)
    return plan


def _print_summary(name: str, plan: EvalPlan, results: Path, total: int) -> None:
    from harness.store import EVAL_ATTEMPTS_FILE, METRICS_FILE, read_json

    print(f"eval {name}: {plan.generated} of {total} runs generated: {len(plan.scored)} scored, "
          f"{len(plan.todo)} not scored, {len(plan.no_score)} without a score (no number, e.g. no rating), "
          f"{len(plan.mismatched)} scored with other settings, {len(plan.corrupt)} with a corrupt file; "
          f"{len(plan.not_generated)} not generated (not scored)")
    for spec, message in plan.corrupt:  # every one: each needs the user
        print(f"  corrupt file: {spec.rel_dir}  {message}")
    for spec, stages in plan.no_score[:LISTED]:
        rec = read_json(spec.run_dir(results) / METRICS_FILE) or {}
        why = "; ".join(f"{s}: {(rec.get(s) or {}).get('missing_reason') or (rec.get(s) or {}).get('reason') or 'no number'}"
                        for s in stages)
        print(f"  without a score (re-score with --force): {spec.rel_dir}  {why}")
    for spec in plan.todo[:LISTED]:
        rec = read_json(spec.run_dir(results) / EVAL_ATTEMPTS_FILE) or {}
        print(f"  not scored: {spec.rel_dir}  {rec.get('last_reason') or ''}")
    for spec, reason in plan.mismatched[:LISTED]:
        print(f"  other settings (use --force): {spec.rel_dir}  {reason}")
    for spec in plan.not_generated[:LISTED]:
        print(f"  not generated: {spec.rel_dir}  ({spec.label}, {spec.prompt!r}, seed {spec.seed})")
    hidden = sum(max(0, n - LISTED) for n in (len(plan.todo), len(plan.no_score), len(plan.mismatched),
                                              len(plan.not_generated)))
    if hidden:
        print(f"  ... and {hidden} more (python -m harness status {name})")


def _check_judge(ev) -> None:
    """The alignment judge (endpoint, key, model) answers, or a UserError before anything is submitted."""
    from harness.workloads import eval_config
    from metrics.alignment import check_judge
    from metrics.judges import JudgeUnavailableError

    try:
        check_judge(eval_config(ev)[0].alignment.judge)
    except JudgeUnavailableError as e:
        raise UserError(f"alignment judge not usable, nothing submitted: {e}") from None


def evaluate_job(job: str, results: Path, *, models: str = "t3bench", stages: str | None = None,
                 device: str | None = None, overrides: list[str] | None = None, force: bool = False,
                 executor: str | None = None, workers: int | None = None, threads: int | None = None,
                 wait: bool = True, workload: str = EVAL_WORKLOAD) -> int:
    """Plan, score through the executor, summarise; returns the exit code (0: every generated run
    scored). Every user error is raised before anything is written or submitted."""
    from harness.executors import run_specs
    from harness.store import USER_ERROR, ensure_writable
    from harness.worker import EvalOptions, WorkerOptions
    from metrics.models import parse_stages

    started = time.time()
    results = Path(results)
    j, specs = load_job_and_plan(job, results)
    settings = j.executor
    if executor is not None:
        if executor not in EXECUTOR_KINDS:
            raise UserError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTOR_KINDS)}")
        settings.kind = executor
    apply_local_settings(settings, "command line", workers, threads)
    ev = EvalOptions(models=models, stages=parse_stages(stages, models), device=device, overrides=tuple(overrides or ()),
                     force_before=started if force else None)
    plan = plan_eval(specs, results, ev)  # also checks the metric set and the --set overrides
    if plan.todo:
        from harness.workloads import preflight

        preflight(workload, plan.todo, ev)  # the metric weights, once, before anything is written
    print(f"eval {j.name}: {len(plan.todo)} run(s) to score (stages {','.join(ev.stages)}, metric models "
          f"{models}{', forced' if force else ''}) on executor {settings.kind}; "
          f"{len(plan.scored)} already scored, {len(plan.not_generated)} not generated")
    if plan.todo and "alignment" in ev.stages:
        _check_judge(ev)  # once, before any run is captioned
    if plan.todo:
        ensure_writable(results)
        opts = WorkerOptions(results=str(results.resolve()), max_attempts=settings.max_attempts, workload=workload,
                             executor=settings.kind, evaluation=ev)
        outcomes = run_specs(plan.todo, opts, settings, results / j.name, wait=wait, job_name=f"eval-{j.name}")
        print(f"outcomes: {dict(sorted(Counter(outcomes).items()))}")
        if not wait and settings.kind == "slurm":  # submitted; `harness eval` again shows the scores
            return 0
    else:
        outcomes = {}
    final = plan_eval(specs, results, EvalOptions(ev.models, ev.stages, ev.device, ev.overrides))
    _print_summary(j.name, final, results, len({s.rel_dir for s in specs}))
    if final.corrupt or outcomes.get(USER_ERROR):  # the messages above say which file and what to do
        return 2
    return 0 if len(final.scored) == final.generated else 1
