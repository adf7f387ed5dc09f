"""SIGTERM handled like Ctrl-C, in the processes we start ourselves.

`kill PID`, a container stop or a scheduler's time limit sends SIGTERM, whose default action ends
Python at once: no `finally`, so a run's status.json would still say "running" and the command would
exit without a word. Raising KeyboardInterrupt instead sends SIGTERM down the path Ctrl-C already
takes: the run records itself as stopped (it resumes from its checkpoint) and the command says how
to resume. Not installed under SLURM: submitit has its own handlers for preemption and timeouts.
"""

from __future__ import annotations

import os
import signal
import threading


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def sigterm_as_interrupt() -> bool:
    """Install the handler (main thread only; not in a SLURM job). Returns whether it did."""
    if threading.current_thread() is not threading.main_thread() or os.environ.get("SLURM_JOB_ID"):
        return False
    signal.signal(signal.SIGTERM, _interrupt)
    return True
