"""The run store: what a run directory says about its run, its lock, and its attempts.

    <run dir>/status.json      written by the generator, last: "done" only when the run is done
    <run dir>/attempts.json    written here (atomically): starts, failures, last reason, history
    <run dir>/spec.json        the RunSpec that made the run
    <run dir>.lock             a file lock held by the one worker running it
    <run dir>/metrics.json     written by the evaluation stage (metrics.evaluate), per stage
    <run dir>/eval_attempts.json   the evaluation's own attempts (same format as attempts.json)
    <run dir>.eval.lock        a file lock held by the one worker scoring it (apart from the
                               generation lock: generating one run never blocks scoring another)

A run's state, as the harness sees it:
    done      status.json says done
    running   another process holds its lock
    failed    its last attempt failed (with the reason); retried until max_attempts failures
    pending   not started, or interrupted (killed, preempted, stopped): resumes from its checkpoint

A failed attempt counts towards max_attempts unless it was a user error (missing weights, an
unwritable folder, a corrupt file: recorded as `user_error`, no attempt spent, the next invocation
tries again) or deterministic (a non-finite loss: the same config fails the same way, so the run is
given up at once; `--retry-failed` or `--force` run it again). A file of the store that is empty,
truncated or of the wrong shape is reported for its run with the file and what to do
(CorruptFileError); the other runs go on.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from generators.errors import CorruptFileError, UserError
from generators.io import atomic_write_json

STATUS_FILE = "status.json"  # generators.outputs.RUN_FILES["status"] (not imported: it pulls torch)
ATTEMPTS_FILE = "attempts.json"
EVAL_ATTEMPTS_FILE = "eval_attempts.json"
METRICS_FILE = "metrics.json"  # metrics.evaluate.METRICS_FILE (not imported: it pulls torch)
LOCK_SUFFIX = ".lock"  # generation
EVAL_LOCK_SUFFIX = ".eval.lock"  # evaluation
SPEC_FILE = "spec.json"
CHECKPOINT_FILE = "checkpoints/last.pt"  # generators.outputs.RUN_FILES["checkpoint"]
HISTORY_KEEP = 20  # attempts kept in attempts.json's history
TRACEBACK_TAIL_CHARS = 4000

DONE, RUNNING, FAILED, PENDING = "done", "running", "failed", "pending"
INTERRUPTED = "interrupted"  # an attempt outcome: killed, preempted or stopped by Ctrl-C
USER_ERROR = "user-error"  # an attempt outcome: bad input or environment; spends no attempt
METRIC_STAGES = ("quality", "alignment", "clip", "toybench")  # metrics.config.STAGES (it pulls torch)

# what to do about a corrupt file, per file of the run store
ADVICE = {
    STATUS_FILE: "delete it (the run resumes from its checkpoint), or rerun with --force (the run is moved "
                 "aside and starts over)",
    ATTEMPTS_FILE: "delete it (it only counts the run's attempts; nothing else is lost)",
    EVAL_ATTEMPTS_FILE: "delete it (it only counts the run's evaluation attempts; nothing else is lost)",
    METRICS_FILE: "delete it and run `harness eval` again (the run's stages are scored anew)",
}
STATES = (DONE, RUNNING, FAILED, PENDING)


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def read_json(path: Path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable (never raises)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_text(v) -> bool:
    return v is None or isinstance(v, str)


def _status_problem(d: dict) -> str | None:
    return None if isinstance(d.get("state"), str) else "no 'state' text"


def _attempts_problem(d: dict) -> str | None:
    if not all(_is_int(d.get(k, 0)) for k in ("count", "failures")):
        return "'count' and 'failures' are not counts"
    history = d.get("history")
    if history is not None and not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
        return "'history' is not a list of records"
    if not all(_is_text(d.get(k)) for k in ("last_reason", "traceback_tail", "user_error")):
        return "a reason is not text"
    return None


def _metrics_problem(d: dict) -> str | None:
    for stage in METRIC_STAGES:
        rec = d.get(stage)
        if rec is not None and not (isinstance(rec, dict) and _is_text(rec.get("status"))):
            return f"stage {stage!r} is not a record"
    return None


_SHAPES = {STATUS_FILE: _status_problem, ATTEMPTS_FILE: _attempts_problem,
           EVAL_ATTEMPTS_FILE: _attempts_problem, METRICS_FILE: _metrics_problem}


def read_record(path: Path) -> dict | None:
    """One JSON object file of the run store (status, attempts, eval attempts, metrics): None when
    it does not exist; CorruptFileError, naming the file and what to do, when it cannot be read, is
    empty or truncated, or is valid JSON of the wrong shape."""
    path = Path(path)
    advice = ADVICE.get(path.name, "delete it")
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CorruptFileError(path, f"cannot be read ({e.strerror or e})", "check its permissions") from None
    if not text.strip():
        raise CorruptFileError(path, "is empty", advice)
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CorruptFileError(path, f"is not valid JSON (truncated?) ({e})", advice) from None
    if not isinstance(data, dict):
        raise CorruptFileError(path, f"holds a JSON {type(data).__name__}, not an object", advice)
    problem = _SHAPES.get(path.name, lambda _: None)(data)
    if problem:
        raise CorruptFileError(path, f"has the wrong shape: {problem}", advice)
    return data


def stage_has_score(record) -> bool:
    """A metrics.json stage record that is done and holds a number: what "scored" means everywhere
    (eval's counts and exit code, the report's rows). A done stage without a number (a judge that
    gave no rating) is a gap, not a score; so is a NaN or infinite one."""
    if not isinstance(record, dict) or record.get("status", "done") != DONE:
        return False
    score = record.get("score")
    return isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)


def ensure_writable(results: Path) -> None:
    """Create the results folder and prove a file can be written there, or raise UserError."""
    try:
        results.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=results)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"results folder {results} cannot be written: {e.strerror or e}") from None


def lock_path(run_dir: Path, suffix: str = LOCK_SUFFIX) -> Path:
    return run_dir.with_name(run_dir.name + suffix)


def run_lock(run_dir: Path, suffix: str = LOCK_SUFFIX) -> FileLock:
    """A non-blocking, non-reentrant lock: a second holder in any process or thread is refused.

    `suffix` picks the lock: LOCK_SUFFIX (generating the run) or EVAL_LOCK_SUFFIX (scoring it)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_path(run_dir, suffix)), timeout=0, thread_local=False, is_singleton=False)


def is_locked(run_dir: Path, suffix: str = LOCK_SUFFIX) -> bool:
    """True when another worker holds the run's lock (of that suffix) right now."""
    if not lock_path(run_dir, suffix).exists():
        return False
    try:
        lock = run_lock(run_dir, suffix)
        lock.acquire()
    except Timeout:
        return True
    except OSError:  # a lock file this user cannot open: nobody can be told apart; not ours to hold
        return False
    lock.release()
    return False


@dataclass
class Attempts:
    """The content of attempts.json (generation) or eval_attempts.json (evaluation): `file`."""

    count: int = 0  # attempts started
    failures: int = 0  # attempts that ended in an error
    last_reason: str | None = None
    traceback_tail: str | None = None
    history: list | None = None
    file: str = ATTEMPTS_FILE
    deterministic: bool = False  # the last failure would repeat (non-finite loss): given up at once
    user_error: str | None = None  # the last attempt ended in a user error (spent no attempt)

    @classmethod
    def read(cls, run_dir: Path, file: str = ATTEMPTS_FILE) -> "Attempts":
        """The record (empty when missing); CorruptFileError when unreadable or of the wrong shape."""
        d = read_record(run_dir / file) or {}
        return cls(d.get("count", 0), d.get("failures", 0), d.get("last_reason"), d.get("traceback_tail"),
                   list(d.get("history") or []), file, bool(d.get("deterministic")), d.get("user_error"))

    def write(self, run_dir: Path) -> None:
        atomic_write_json(run_dir / self.file, {
            "count": self.count, "failures": self.failures, "last_reason": self.last_reason,
            "traceback_tail": self.traceback_tail, "history": (self.history or [])[-HISTORY_KEEP:],
            "deterministic": self.deterministic, "user_error": self.user_error})

    def gave_up(self, max_attempts: int) -> bool:
        return self.failures >= max_attempts or (self.failures > 0 and self.deterministic)

    def forget_failures(self) -> None:
        """--retry-failed: the failures so far no longer count."""
        self.failures, self.deterministic = 0, False

    def start(self, run_dir: Path, executor: str, details: dict | None = None) -> None:
        """Record a new attempt; `details` describe what it starts from (default: whether the
        generation has a checkpoint to resume)."""
        history = self.history if self.history is not None else []
        if history and history[-1].get("outcome") is None:
            history[-1]["outcome"] = INTERRUPTED  # killed: resumes, not a failure
        self.count += 1
        if details is None:
            details = {"checkpoint_at_start": (run_dir / CHECKPOINT_FILE).is_file()}
        history.append({"attempt": self.count, "started": utc_stamp(), "host": socket.gethostname(),
                        "pid": os.getpid(), "executor": executor, **details, "outcome": None})
        self.history = history
        self.user_error = None  # tried again: the user acted (a kill now leaves it interrupted)
        self.write(run_dir)

    def finish(self, run_dir: Path, outcome: str, reason: str | None = None, tb: str | None = None,
               deterministic: bool = False) -> None:
        """Record how the attempt ended: FAILED counts a failure (`deterministic`: it would repeat,
        the run is given up), USER_ERROR gives the attempt back (the user has to act first)."""
        if self.history:
            self.history[-1].update(outcome=outcome, ended=utc_stamp())
            if reason:
                self.history[-1]["reason"] = reason
        self.user_error = None
        if outcome == FAILED:
            self.failures += 1
            self.deterministic = deterministic
        elif outcome == USER_ERROR:  # no failure counted: the same attempt is tried again after the fix
            self.user_error = reason
        if outcome in (FAILED, USER_ERROR):
            self.last_reason = reason
            self.traceback_tail = tb[-TRACEBACK_TAIL_CHARS:] if tb else None
        self.write(run_dir)


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def run_state(run_dir: Path, max_attempts: int, check_lock: bool = True) -> tuple[str, dict]:
    """(state, details) of one run; details hold the reason and attempt counts of failed runs.

    A run whose status or attempts file is corrupt is FAILED with details "corrupt" (the file) and
    a reason that says what to do; a run whose last attempt met a user error is FAILED with
    "user_error" (it spent no attempt and is tried again)."""
    try:
        status = read_record(run_dir / STATUS_FILE)
        if status is None and not run_dir.is_dir():
            return PENDING, {}
        if status is not None and status.get("state") == DONE:
            return DONE, {}
        if check_lock and is_locked(run_dir):
            return RUNNING, {}
        attempts = Attempts.read(run_dir)
    except CorruptFileError as e:
        return FAILED, {"reason": str(e), "corrupt": e.path, "gave_up": True}
    if attempts.user_error and (status is None or status.get("state") != DONE):
        return FAILED, {"reason": attempts.user_error, "user_error": True, "failures": attempts.failures,
                        "max_attempts": max_attempts, "gave_up": False}
    if attempts.failures > 0 and (status is None or status.get("state") == FAILED
                                  or attempts.gave_up(max_attempts)):
        return FAILED, {"reason": attempts.last_reason or (status or {}).get("reason"),
                        "failures": attempts.failures, "max_attempts": max_attempts,
                        "gave_up": attempts.gave_up(max_attempts), "deterministic": attempts.deterministic}
    return PENDING, {"interrupted": status is not None}


def is_done(run_dir: Path) -> bool:
    """status.json says done (CorruptFileError when it cannot be read or has the wrong shape)."""
    status = read_record(run_dir / STATUS_FILE)
    return status is not None and status.get("state") == DONE


def done_before(run_dir: Path, timestamp: float) -> bool:
    """A done run whose status was written before `timestamp` (so not redone by this invocation)."""
    try:
        return is_done(run_dir) and (run_dir / STATUS_FILE).stat().st_mtime < timestamp
    except OSError:
        return False


class RunBeingScored(Exception):
    """`harness eval` holds the run's eval lock: the run cannot be moved aside now."""


def move_aside(run_dir: Path) -> Path:
    """Rename a run directory to `<run id>.replaced-<UTC timestamp>` (nothing finished is lost).

    Under the run's eval lock: an evaluation scoring the old run and this move exclude each other,
    so the old run's scores can never land in the folder of the run that replaces it (the scorer
    re-checks the run under that lock). RunBeingScored while an evaluation holds it."""
    lock = run_lock(run_dir, EVAL_LOCK_SUFFIX)
    try:
        lock.acquire()
    except Timeout:
        raise RunBeingScored("`harness eval` is scoring this run now; not replaced (run --force again "
                             "when the evaluation ends)") from None
    try:
        target = run_dir.with_name(f"{run_dir.name}.replaced-{utc_stamp()}")
        os.replace(run_dir, target)
    finally:
        lock.release()
    return target

