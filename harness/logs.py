"""Log lines of the workers (local pool, Ray, SLURM): UTC timestamp, level, process, message.

    from harness.logs import get_logger
    log = get_logger(__name__)          # configures the harness loggers once per process
    log.info("run %s: done", rel_dir)

Every executor runs its runs through harness.worker.execute_run, so configuring there covers the
local pool's processes, Ray's tasks and SLURM's array tasks alike; their stderr (the terminal,
Ray's forwarded worker output, submitit's log files) gets lines such as

    2026-11-29T12:50:24Z INFO [pid 4242] harness.worker: run runs/sds/single/0001-s0: done (41.2 s)

Lines go through tqdm.write, so a progress bar in the same terminal is not broken. The level comes
from HARNESS_LOG_LEVEL (default INFO).
"""

from __future__ import annotations

import logging
import os
import sys
import time

LOG_FORMAT = "%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
LEVEL_ENV = "HARNESS_LOG_LEVEL"
ROOT = "harness"


class _TqdmHandler(logging.StreamHandler):
    """Writes above any tqdm bar of this process instead of through it, to the current stderr
    (not the one of the moment it was made: a redirected stderr gets the lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging() -> logging.Logger:
    """Configure the `harness` logger once per process (idempotent); returns it."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler(sys.stderr)
        formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
        formatter.converter = time.gmtime  # UTC, as the Z says
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.setLevel(os.environ.get(LEVEL_ENV, "INFO").upper())
        logger.propagate = False
    return logger


def get_logger(name: str) -> logging.Logger:
    setup_logging()
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")
