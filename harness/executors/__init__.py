"""Executors decide where `execute_run(spec, options)` runs; the run store decides what runs.

    outcomes = run_specs(specs, options, settings, job_dir)   # {outcome: count}

The same executors run the evaluation stage: options.evaluation set makes every worker score its
run (harness.worker.execute_eval) instead of generating it.

    local   in this process, one run after another (a bar over runs, one over steps), or in
            `local.workers` processes at once
    ray     one Ray task per run with its GPU/CPU request; a local Ray or an existing cluster
    slurm   submitit job arrays; preempted tasks requeue and resume from their checkpoints
"""

from __future__ import annotations

from pathlib import Path

from harness.jobs import ExecutorSettings
from harness.plan import RunSpec
from harness.worker import WorkerOptions


def bar_label(opts: WorkerOptions) -> str:
    """What the progress bars count: runs generated or runs scored."""
    return "runs" if opts.evaluation is None else "scored"


def run_specs(specs: list[RunSpec], opts: WorkerOptions, settings: ExecutorSettings, job_dir: Path,
              wait: bool = True, job_name: str | None = None) -> dict[str, int]:
    """`job_name`: the SLURM job name (default: the job folder's name)."""
    if settings.kind == "local":
        from harness.executors.local import run_local

        return run_local(specs, opts, settings.local)
    if settings.kind == "ray":
        from harness.executors.ray_executor import run_ray

        return run_ray(specs, opts, settings.ray)
    if settings.kind == "slurm":
        from harness.executors.slurm_executor import run_slurm

        return run_slurm(specs, opts, settings.slurm, job_dir, wait=wait, job_name=job_name)
    raise ValueError(f"unknown executor {settings.kind!r}")
