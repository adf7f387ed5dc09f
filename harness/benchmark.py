"""A benchmark invocation: job + command-line settings -> plan -> dispatch -> status.

    RESULTS/<job name>/job.yaml     the job as run (command-line settings applied)
    RESULTS/<job name>/plan.json    every run of the job: group, method, category, prompt, seed, dir
    RESULTS/runs/...                the shared run store

Every check a user can fail (job file, methods, overrides, prompts, results folder, the model
sets' weights, a saved plan of the same job name with other runs) happens before anything is
written, so a bad command touches nothing.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from generators.errors import UserError
from generators.io import atomic_write_json, atomic_write_text
from generators.untrusted import safe_load
from harness.jobs import EXECUTOR_KINDS, Job, RunGroup, apply_local_settings, job_to_dict, load_job, parse_job
from harness.plan import RunSpec, plan_job
from harness.store import DONE, FAILED, ensure_writable, is_done, move_aside, run_state
from harness.workloads import DEFAULT_WORKLOAD

JOB_FILE = "job.yaml"
PLAN_FILE = "plan.json"
MAX_DEFAULT_NAME = 64


@dataclass
class Settings:
    """Command-line settings; None means "as the job file says"."""

    job: Optional[str] = None
    methods: list = field(default_factory=list)
    name: Optional[str] = None
    prompts: Optional[str] = None
    seeds: Optional[list] = None
    models: Optional[str] = None
    executor: Optional[str] = None
    limit: Optional[int] = None
    steps: Optional[int] = None
    max_attempts: Optional[int] = None
    workers: Optional[int] = None  # local executor: runs at once (e.g. 1 while a training shares the CPU)
    threads: Optional[int] = None  # local executor: torch threads of each run
    overrides: dict = field(default_factory=dict)
    results: Path = Path("results")
    force: bool = False
    retry_failed: bool = False
    other_code: str = "reuse"  # finished runs of another code version: harness.status.OTHER_CODE_POLICIES
    dry_run: bool = False
    wait: bool = True
    workload: str = DEFAULT_WORKLOAD
    replace_plan: bool = False  # --replace-plan: a job of this name may change its runs


def default_job_name(methods: list[str]) -> str:
    """"sds+anchords-ipa"; a long list becomes "9-methods-<hash>" (a folder name must stay short)."""
    joined = "+".join(methods)
    if len(joined) <= MAX_DEFAULT_NAME:
        return joined
    import hashlib

    return f"{len(methods)}-methods-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def build_job(s: Settings) -> Job:
    """The job file (or a job made of --method flags) with the command-line settings applied."""
    from generators.config import deep_merge

    if s.job is not None:
        job = load_job(s.job)
        if s.methods:  # restrict a job file to some of its run groups
            groups = {g.name for g in job.groups()} | {g.method for g in job.groups()}
            unknown = [m for m in s.methods if m not in groups]
            if unknown:
                raise UserError(f"{s.job}: no run group or method {unknown[0]!r} in this job "
                                f"(it has: {', '.join(sorted(groups))})")
            job.methods = [m for m in job.methods if m in s.methods]
            job.runs = [r for r in job.runs if r.name in s.methods or r.method in s.methods]
    else:
        if not s.methods:
            raise UserError("give --job FILE or at least one --method (make benchmark METHOD=...)")
        job = parse_job({"name": s.name or default_job_name(s.methods), "methods": list(s.methods)}, "command line")
    if s.name:
        job.name = s.name
    for attr in ("prompts", "seeds", "models", "limit"):
        if getattr(s, attr) is not None:
            setattr(job, attr, getattr(s, attr))
    if s.executor is not None:
        if s.executor not in EXECUTOR_KINDS:
            raise UserError(f"unknown executor {s.executor!r}: use one of {', '.join(EXECUTOR_KINDS)}")
        job.executor.kind = s.executor
    if s.max_attempts is not None:
        job.executor.max_attempts = s.max_attempts
    apply_local_settings(job.executor, "command line", s.workers, s.threads)
    cli = dict(s.overrides)
    if s.steps is not None:
        cli["steps"] = s.steps
    if cli:  # command-line overrides win over every override of the job file
        job.overrides = deep_merge(job.overrides, cli)
        job.runs = [RunGroup(r.method, r.models, deep_merge(r.overrides, cli), r.label) for r in job.runs]
    # validate the combination once more (names, seeds, limits after the command line)
    return parse_job(job_to_dict(job), job.source or "command line")


def select_to_run(specs: list[RunSpec], results: Path, s: Settings, max_attempts: int) -> list[RunSpec]:
    """The runs an executor should get: not done (unless --force), not given up (unless asked)."""
    from generators.provenance import code_version
    from harness.status import RERUN, other_code_version

    if s.force:
        return list(specs)
    out = []
    for spec in specs:
        state, details = run_state(spec.run_dir(results), max_attempts, check_lock=False)
        if state == DONE and s.other_code == RERUN and other_code_version(spec.run_dir(results), code_version()):
            out.append(spec)  # moved aside before it runs again (benchmark)
            continue
        if state == DONE or (state == FAILED and details.get("gave_up") and not s.retry_failed):
            continue
        out.append(spec)
    return out


def _move_aside_other_code(todo: list[RunSpec], results: Path, s: Settings) -> None:
    """--other-code rerun: finished runs of another code version are moved aside (never deleted)."""
    from generators.provenance import code_version
    from harness.status import RERUN, other_code_version

    if s.other_code != RERUN or s.force:
        return
    for spec in todo:
        d = spec.run_dir(results)
        if is_done(d) and other_code_version(d, code_version()):
            move_aside(d)


def save_job_files(job: Job, specs: list[RunSpec], job_dir: Path) -> None:
    atomic_write_text(job_dir / JOB_FILE, yaml.safe_dump(job_to_dict(job), sort_keys=False))
    atomic_write_json(job_dir / PLAN_FILE, {"job": job.name, "results_layout": "runs/<method>/<category>/<run id>",
                                            "runs": [spec.to_dict() for spec in specs]})


PLAN_ADVICE = "run `harness benchmark` for this job again to rewrite it (finished runs are kept)"


def load_plan(job_dir: Path) -> tuple[dict, list[RunSpec]]:
    """The saved job (as a dict) and its planned runs; CorruptFileError (the file, what to do)
    when job.yaml or plan.json is missing, empty, truncated or of the wrong shape."""
    from generators.errors import CorruptFileError

    def read(name: str, parse):
        path = job_dir / name
        try:
            return parse(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise CorruptFileError(path, f"cannot be read ({e.strerror or e})", PLAN_ADVICE) from None
        except (ValueError, yaml.YAMLError) as e:
            raise CorruptFileError(path, f"is not valid (truncated?): {str(e).splitlines()[0] if str(e) else e}",
                                   PLAN_ADVICE) from None

    plan = read(PLAN_FILE, json.loads)
    job = read(JOB_FILE, safe_load)  # bounded: a doctored job.yaml cannot exhaust memory
    if not isinstance(job, dict):
        raise CorruptFileError(job_dir / JOB_FILE, "is not a job (a YAML mapping)", PLAN_ADVICE)
    try:
        specs = [RunSpec(**{k: v for k, v in r.items() if k != "dir"}) for r in plan["runs"]]
    except (TypeError, KeyError, AttributeError) as e:
        raise CorruptFileError(job_dir / PLAN_FILE, f"has the wrong shape ({type(e).__name__}: {e})",
                               PLAN_ADVICE) from None
    return job, specs


def check_saved_plan(job: Job, specs: list[RunSpec], job_dir: Path, replace: bool) -> None:
    """A job name names one set of runs: refuse (UserError) when RESULTS/<job>/ holds a plan with
    other runs, unless `replace` (--replace-plan). A plan that cannot be read is replaced (with a
    note): it is rewritten from the job below anyway."""
    from generators.errors import CorruptFileError

    if replace or not (job_dir / PLAN_FILE).exists():
        return
    try:
        _, saved = load_plan(job_dir)
    except CorruptFileError as e:
        print(f"note: {e}: replaced by this job's plan")
        return
    old, new = {sp.rel_dir for sp in saved}, {sp.rel_dir for sp in specs}
    if old != new:
        raise UserError(
            f"job {job.name!r} already has a saved plan in {job_dir} with other runs ({len(old - new)} of its "
            f"{len(old)} runs are not in this one, {len(new - old)} new): its status and report would silently "
            f"cover the new runs only. Give this one another name (--name NAME), or replace the saved plan on "
            f"purpose with --replace-plan (no run is deleted)")


def describe_plan(job: Job, specs: list[RunSpec], todo: list[RunSpec], results: Path) -> str:
    per_group = Counter((sp.label, sp.category) for sp in specs)
    todo_group = Counter((sp.label, sp.category) for sp in todo)
    ex = job.executor
    lines = [f"job {job.name}: {len(specs)} runs ({len(todo)} to run, {len(specs) - len(todo)} done or given up), "
             f"prompts {job.prompts}" + (f" (first {job.limit} per category)" if job.limit else "")
             + f", seeds {job.seeds}, executor {ex.kind}, max_attempts {ex.max_attempts}, results {results}"]
    if ex.kind == "slurm":
        lines.append(f"  slurm: {ex.slurm}")
    elif ex.kind == "ray":
        lines.append(f"  ray: {ex.ray}")
    for (label, category), n in per_group.items():
        lines.append(f"  {label:<32} {category:<10} {n:>5} runs, {todo_group[(label, category)]:>5} to run")
    for spec in todo[:5]:
        lines.append(f"  next: {spec.rel_dir}  ({spec.prompt!r}, seed {spec.seed}, models {spec.models})")
    return "\n".join(lines)


def benchmark(s: Settings) -> tuple[Job, list[RunSpec], dict[str, int]]:
    """Plan and run; returns (job, plan, outcome counts). Raises UserError before writing anything."""
    from harness.executors import run_specs
    from harness.worker import WorkerOptions

    started = time.time()
    job = build_job(s)
    specs = plan_job(job)
    results = Path(s.results)
    todo = select_to_run(specs, results, s, job.executor.max_attempts)
    job_dir = results / job.name
    check_saved_plan(job, specs, job_dir, s.replace_plan)
    if s.dry_run:
        print(describe_plan(job, specs, todo, results))
        return job, specs, {}
    from harness.workloads import preflight

    preflight(s.workload, todo)  # the model sets' weights, once, before anything is written
    ensure_writable(results)
    _move_aside_other_code(todo, results, s)
    save_job_files(job, specs, job_dir)
    print(describe_plan(job, specs, todo, results).splitlines()[0])
    opts = WorkerOptions(results=str(results.resolve()), max_attempts=job.executor.max_attempts,
                         workload=s.workload, executor=job.executor.kind,
                         force_before=started if s.force else None, retry_failed=s.retry_failed)
    outcomes = run_specs(todo, opts, job.executor, job_dir, wait=s.wait)
    return job, specs, outcomes
