"""The local executor: every run on this machine, one after another or in a few worker processes.

    executor: {kind: local, local: {workers: 2}}   # two runs at once, one torch thread each on 2 cores

With `workers: 1` (the default) runs go in this process, in order, with a bar over steps from the
workload. With more, each run goes to a pool of worker processes (spawned, so no CUDA or thread
state is inherited); the run store's per-run locks make that as safe as any two workers.

On a multi-GPU node each worker process gets its own GPU: the GPUs this process may use
(CUDA_VISIBLE_DEVICES if set, else every GPU torch counts) are dealt to the workers in turn, and
each worker sees only its own (CUDA_VISIBLE_DEVICES set before it initialises CUDA). With more
workers than GPUs, workers share GPUs round-robin; without a GPU nothing is set.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from multiprocessing import get_context

from tqdm.auto import tqdm

from generators.errors import UserError
from harness.executors import bar_label
from harness.jobs import LocalSettings
from harness.plan import RunSpec
from harness.worker import WorkerOptions, execute_run

WORKER_DIED = "worker-died"  # outcome of the runs a dead worker process left unfinished


def run_local(specs: list[RunSpec], opts: WorkerOptions, settings: LocalSettings | None = None,
              show_progress: bool = True) -> dict[str, int]:
    """Run each spec; a bar over runs here (and over steps from the workload when in-process)."""
    settings = settings or LocalSettings()
    if settings.workers < 1:
        raise UserError(f"executor.local.workers must be >= 1, got {settings.workers}")
    if settings.workers > 1 and len(specs) > 1:
        return _run_pool(specs, opts, settings, show_progress)
    opts = replace(opts, show_progress=show_progress)
    outcomes: Counter = Counter()
    with tqdm(total=len(specs), desc=bar_label(opts), unit="run", disable=not show_progress) as bar, \
            _torch_threads(settings.threads_per_worker):
        for spec in specs:
            bar.set_postfix_str(f"{spec.label} | {spec.category} | {spec.prompt[:30]}", refresh=True)
            outcomes[execute_run(spec, opts)] += 1
            bar.update(1)
            bar.set_postfix(dict(outcomes), refresh=False)
    return dict(outcomes)


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """In-process runs use `threads_per_worker` torch threads when it is set (as pool workers do),
    and this process gets its own thread count back afterwards."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


PARENT_WATCH_S = 1.0  # how often a pool worker checks that its parent is alive (where prctl is missing)


def _end_with_parent(parent: int) -> None:
    """A pool worker ends when the process that started it ends (SIGTERM, SIGKILL, a crash): an
    orphan would go on running its run and holding its lock, so a rerun would find it "locked".
    Linux: the kernel's parent-death signal; elsewhere (and as a backstop) a thread that watches
    the parent. The run resumes from its checkpoint, as after any kill. `parent`: its pid."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:  # the parent died before the signal was set up
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_WATCH_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out: CUDA_VISIBLE_DEVICES's entries if set, else 0..count-1."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_per_worker(workers: int, gpus: list[str]) -> list[str | None]:
    """GPU of each worker: dealt in turn (worker i gets gpus[i % len]); None for all without GPUs."""
    return [gpus[i % len(gpus)] if gpus else None for i in range(workers)]


def _init_worker(threads: int, parent: int, gpu_slots=None) -> None:
    """A pool worker: ends with its parent, its own GPU (one slot taken from the queue), torch
    threads, no loading bars (several workers would garble them). SIGTERM (the parent's death
    signal, or a `kill`) stops the worker's run resumable, as Ctrl-C does."""
    from generators.signals import sigterm_as_interrupt

    sigterm_as_interrupt()
    _end_with_parent(parent)
    try:  # one slot per worker; a worker beyond them (none is started) would share nothing
        gpu = gpu_slots.get(timeout=30) if gpu_slots is not None else None
    except queue.Empty:
        gpu = None
    if gpu is not None:  # before torch touches CUDA: the worker sees its GPU as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch
    from transformers.utils import logging as hf_logging

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()


def _worker_pool(workers: int, threads: int) -> ProcessPoolExecutor:
    """Spawned workers, each taking its GPU from a queue filled with one slot per worker."""
    ctx = get_context("spawn")
    slots = ctx.Queue()
    for gpu in gpu_per_worker(workers, visible_gpus()):
        slots.put(gpu)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(threads, os.getpid(), slots))


def _run_pool(specs: list[RunSpec], opts: WorkerOptions, settings: LocalSettings, show_progress: bool) -> dict[str, int]:
    workers = min(settings.workers, len(specs))
    threads = settings.threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    opts = replace(opts, show_progress=False)  # one bar over runs; step bars of parallel runs would interleave
    outcomes: Counter = Counter()
    with tqdm(total=len(specs), desc=f"{bar_label(opts)} ({workers} workers)", unit="run",
              disable=not show_progress) as bar:
        with _worker_pool(workers, threads) as pool:
            futures = {pool.submit(execute_run, spec, opts): spec for spec in specs}
            try:
                for future in as_completed(futures):
                    spec = futures[future]
                    outcomes[future.result()] += 1
                    bar.set_postfix_str(f"last: {spec.label} | {spec.prompt[:30]}", refresh=False)
                    bar.update(1)
            except BrokenProcessPool as e:
                # a worker was killed (out of memory, a signal): every run not finished is left as it
                # was (checkpointed, its lock freed with the process); the same command resumes them
                lost = len(specs) - sum(outcomes.values())
                outcomes[WORKER_DIED] += lost
                print(f"\nerror: a worker process died ({e}); {lost} run(s) not finished. Finished runs are "
                      f"kept: run the same command again to resume the rest.", file=sys.stderr)
            except BaseException:  # Ctrl-C or SIGTERM: start nothing new; checkpoints keep the rest
                # Ctrl-C reaches the workers too (one process group), SIGTERM to this process does
                # not: pass it on, so each worker stops its run resumable instead of finishing it
                # while this process waits (ProcessPoolExecutor has no public handle on its workers)
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    if proc.is_alive():
                        proc.terminate()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return dict(outcomes)
