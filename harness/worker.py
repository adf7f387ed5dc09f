"""Run one RunSpec safely, wherever an executor put it: lock, skip, resume, record, retry.

    outcome = execute_run(spec, options)

Outcomes: "done" (ran to the end now), "cached" (was already done), "locked" (another worker
holds it, or `harness eval` is scoring the run --force would replace), "failed" (max_attempts
failures, or one deterministic failure such as a non-finite loss; the last reason in
attempts.json), "stopped" (the workload stopped early and can resume), "user-error" (bad settings,
missing weights, a corrupt file, an unwritable run folder or lock: printed, no attempt spent, the
other runs go on). Exceptions of the workload are caught, recorded and retried; KeyboardInterrupt
and SystemExit (a kill, a SLURM preemption) propagate and leave the run resumable.

With `options.evaluation` set, the worker scores the run instead (`execute_eval`): only a run
whose generation is done ("not-generated" otherwise), under the run's own eval lock, with its
attempts in eval_attempts.json; status.json and attempts.json are only read. Every invocation
gives each unscored run up to max_attempts tries (evaluation failures are mostly environmental:
missing weights, a judge endpoint down, so a new `harness eval` is the retry); a UserError (bad
settings, a broken run, missing weights) or a stage that ended without a score is not retried
within the invocation, it would end the same way.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from filelock import Timeout

from generators.errors import CorruptFileError, UserError
from generators.io import atomic_write_json
from harness.plan import RunSpec
from harness.store import (
    DONE,
    EVAL_ATTEMPTS_FILE,
    EVAL_LOCK_SUFFIX,
    FAILED,
    INTERRUPTED,
    SPEC_FILE,
    USER_ERROR,
    Attempts,
    RunBeingScored,
    done_before,
    format_traceback,
    is_done,
    move_aside,
    run_lock,
)
from harness.workloads import DEFAULT_WORKLOAD, load_workload
from harness.logs import get_logger

CACHED, LOCKED, STOPPED = "cached", "locked", "stopped"
NOT_GENERATED = "not-generated"  # an eval outcome: the run's generation is not done


@dataclass(frozen=True)
class EvalOptions:
    """What `harness eval` asks of every run; travels inside WorkerOptions to every executor."""

    models: str  # metric model set (t3bench, tiny or a yaml)
    stages: tuple  # metrics.config.STAGES or a subset, in that order
    device: str | None = None  # None: the set's default
    overrides: tuple = ()  # --set KEY=VALUE, as typed (EvalConfig overrides)
    # --force: re-score stages not scored since this time (so an interrupted forced evaluation
    # resumes); None: keep every stage already scored with the same settings
    force_before: float | None = None


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker treats a run: the same for every run of one invocation (picklable)."""

    results: str
    max_attempts: int = 3
    workload: str = DEFAULT_WORKLOAD
    executor: str = "local"
    # --force: redo runs finished before this time (a run redone by a concurrent forced worker
    # after it is kept); None: never redo a done run
    force_before: float | None = None
    retry_failed: bool = False  # forget the failures of runs that reached max_attempts
    show_progress: bool = False
    evaluation: EvalOptions | None = None  # set: score the run (an eval workload) instead


def execute_run(spec: RunSpec, opts: WorkerOptions) -> str:
    """Generate (or, with opts.evaluation, score) one run; logs its outcome with a timestamp and
    level (harness.logs)."""
    log = get_logger(__name__)
    t0 = time.monotonic()
    kind = "eval" if opts.evaluation is not None else "run"
    try:
        outcome = _execute(spec, opts)
    except BaseException as e:
        log.warning("%s %s: interrupted (%s) after %.1f s", kind, spec.rel_dir, type(e).__name__, time.monotonic() - t0)
        raise
    if outcome != CACHED:
        log.log(logging.WARNING if outcome in (FAILED, USER_ERROR) else logging.INFO, "%s %s: %s (%.1f s)", kind,
                spec.rel_dir, outcome, time.monotonic() - t0)
    return outcome


def _execute(spec: RunSpec, opts: WorkerOptions) -> str:
    """Whatever happens to this run (a user error, a corrupt file, an unwritable folder or lock)
    ends here as its outcome: the next run goes on."""
    try:
        if opts.evaluation is not None:
            return execute_eval(spec, opts)
        run_dir = spec.run_dir(opts.results)
        if opts.force_before is None and is_done(run_dir):
            return CACHED  # the common case on a re-run: no lock file touched
        return _under_lock(run_lock(run_dir), lambda: _execute_locked(spec, run_dir, opts))
    except RunBeingScored as e:
        print(f"run {spec.rel_dir}: {e}", file=sys.stderr, flush=True)
        return LOCKED
    except (UserError, OSError) as e:
        why = str(e) if isinstance(e, UserError) else f"cannot write the run's files: {e}"
        print(f"error: run {spec.rel_dir}: {why}", file=sys.stderr, flush=True)
        return USER_ERROR


def _under_lock(lock, body: Callable[[], str]) -> str:
    """body() while holding a run's lock; LOCKED when another worker holds it."""
    try:
        lock.acquire()
    except Timeout:
        return LOCKED
    try:
        return body()
    finally:
        lock.release()


def _start_over(run_dir: Path) -> Attempts:
    """--force: move the run aside (kept, never deleted); it starts again from nothing."""
    if run_dir.exists():
        move_aside(run_dir)
    return Attempts()


def _execute_locked(spec: RunSpec, run_dir: Path, opts: WorkerOptions) -> str:
    forced = opts.force_before is not None
    try:  # re-check under the lock: another worker may have finished it since
        done = is_done(run_dir)
        attempts = Attempts.read(run_dir)
    except CorruptFileError:
        if not forced:
            raise
        done, attempts = False, _start_over(run_dir)
    if done:
        if not forced or not done_before(run_dir, opts.force_before):
            return CACHED
        attempts = _start_over(run_dir)
    if attempts.gave_up(opts.max_attempts):
        if forced:
            attempts = _start_over(run_dir)
        elif opts.retry_failed:
            attempts.forget_failures()
        else:
            return FAILED
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / SPEC_FILE, spec.to_dict())
    workload = load_workload(opts.workload)
    while attempts.failures < opts.max_attempts:
        attempts.start(run_dir, opts.executor)
        try:
            status = workload(spec, run_dir, show_progress=opts.show_progress)
        except UserError as e:  # bad settings, missing weights, a corrupt checkpoint: the user acts first
            attempts.finish(run_dir, USER_ERROR, f"{type(e).__name__}: {e}", format_traceback(e))
            raise
        except Exception as e:  # recorded and retried; the next run goes on regardless
            attempts.finish(run_dir, FAILED, f"{type(e).__name__}: {e}", format_traceback(e))
            get_logger(__name__).warning("run %s: attempt %d failed: %s: %s", spec.rel_dir, attempts.failures,
                                         type(e).__name__, e)
            continue
        except BaseException as e:  # Ctrl-C, a SLURM preemption's exit: resumable, not a failure
            attempts.finish(run_dir, INTERRUPTED, f"{type(e).__name__}: {e}")
            raise
        state = (status or {}).get("state")
        if state == DONE:
            attempts.finish(run_dir, DONE)
            return DONE
        if state == STOPPED:
            attempts.finish(run_dir, STOPPED)
            return STOPPED
        deterministic = bool((status or {}).get("deterministic"))  # a retry would fail the same way
        attempts.finish(run_dir, FAILED, (status or {}).get("reason") or f"the run ended in state {state!r}",
                        deterministic=deterministic)
        if deterministic:
            return FAILED
    return FAILED



# ----------------------------------------------------------------------------------------------
# evaluation


def execute_eval(spec: RunSpec, opts: WorkerOptions) -> str:
    """Score one run whose generation is done; outcomes as execute_run, plus "not-generated"."""
    run_dir = spec.run_dir(opts.results)
    if not is_done(run_dir):
        return NOT_GENERATED
    return _under_lock(run_lock(run_dir, EVAL_LOCK_SUFFIX), lambda: _evaluate_locked(spec, run_dir, opts))


def _evaluate_locked(spec: RunSpec, run_dir: Path, opts: WorkerOptions) -> str:
    # `benchmark --force` moves a run aside only under this lock (store.move_aside): re-checked
    # here, the run scored below is the one whose scores are written, never its replacement
    if not is_done(run_dir):
        return NOT_GENERATED
    ev = opts.evaluation
    workload = load_workload(opts.workload)
    attempts = Attempts.read(run_dir, EVAL_ATTEMPTS_FILE)
    details = {"metric_models": ev.models, "stages": list(ev.stages), "force": ev.force_before is not None}
    for _ in range(opts.max_attempts):  # tries of this invocation; earlier ones do not count
        attempts.start(run_dir, opts.executor, details)
        try:
            status = workload(spec, run_dir, show_progress=opts.show_progress, evaluation=ev)
        except UserError as e:  # the run, the settings or the weights: the user acts first
            attempts.finish(run_dir, USER_ERROR, f"{type(e).__name__}: {e}", format_traceback(e))
            raise
        except Exception as e:  # recorded and retried
            attempts.finish(run_dir, FAILED, f"{type(e).__name__}: {e}", format_traceback(e))
            continue
        except BaseException as e:  # Ctrl-C, a SLURM preemption: scored stages are kept
            attempts.finish(run_dir, INTERRUPTED, f"{type(e).__name__}: {e}")
            raise
        state = (status or {}).get("state")
        if state in (DONE, CACHED):
            attempts.finish(run_dir, state)
            return state
        # a stage without a score (weights or judge not available): recorded in metrics.json too
        attempts.finish(run_dir, FAILED, (status or {}).get("reason") or f"the evaluation ended in state {state!r}")
        return FAILED
    return FAILED
