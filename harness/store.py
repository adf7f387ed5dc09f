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
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from generators.errors import UserError
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
    lock = run_lock(run_dir, suffix)
    try:
        lock.acquire()
    except Timeout:
        return True
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

    @classmethod
    def read(cls, run_dir: Path, file: str = ATTEMPTS_FILE) -> "Attempts":
        d = read_json(run_dir / file) or {}
        return cls(int(d.get("count", 0)), int(d.get("failures", 0)), d.get("last_reason"),
                   d.get("traceback_tail"), list(d.get("history") or []), file)

    def write(self, run_dir: Path) -> None:
        atomic_write_json(run_dir / self.file, {
            "count": self.count, "failures": self.failures, "last_reason": self.last_reason,
            "traceback_tail": self.traceback_tail, "history": (self.history or [])[-HISTORY_KEEP:]})

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
        self.write(run_dir)

    def finish(self, run_dir: Path, outcome: str, reason: str | None = None, tb: str | None = None) -> None:
        if self.history:
            self.history[-1].update(outcome=outcome, ended=utc_stamp())
            if reason:
                self.history[-1]["reason"] = reason
        if outcome == FAILED:
            self.failures += 1
            self.last_reason = reason
            self.traceback_tail = tb[-TRACEBACK_TAIL_CHARS:] if tb else None
        self.write(run_dir)


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def run_state(run_dir: Path, max_attempts: int, check_lock: bool = True) -> tuple[str, dict]:
    """(state, details) of one run; details hold the reason and attempt counts of failed runs."""
    status = read_json(run_dir / STATUS_FILE)
    if status is None and not run_dir.is_dir():
        return PENDING, {}
    if status is not None and status.get("state") == DONE:
        return DONE, {}
    if check_lock and is_locked(run_dir):
        return RUNNING, {}
    attempts = Attempts.read(run_dir)
    if attempts.failures > 0 and (status is None or status.get("state") == FAILED
                                  or attempts.failures >= max_attempts):
        return FAILED, {"reason": attempts.last_reason or (status or {}).get("reason"),
                        "failures": attempts.failures, "max_attempts": max_attempts,
                        "gave_up": attempts.failures >= max_attempts}
    return PENDING, {"interrupted": status is not None}


def is_done(run_dir: Path) -> bool:
    status = read_json(run_dir / STATUS_FILE)
    return status is not None and status.get("state") == DONE


def done_before(run_dir: Path, timestamp: float) -> bool:
    """A done run whose status was written before `timestamp` (so not redone by this invocation)."""
    try:
        return is_done(run_dir) and (run_dir / STATUS_FILE).stat().st_mtime < timestamp
    except OSError:
        return False


def move_aside(run_dir: Path) -> Path:
    """Rename a run directory to `<run id>.replaced-<UTC timestamp>` (nothing finished is lost)."""
    target = run_dir.with_name(f"{run_dir.name}.replaced-{utc_stamp()}")
    os.replace(run_dir, target)
    return target

