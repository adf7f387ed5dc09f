"""The SLURM executor: one submitit job array per submission, one array task per run.

Each submission gets a fresh submitit folder, RESULTS/<job>/submitit/<UTC timestamp>/ (a reused
folder can hand back a stale result pickle once SLURM job ids restart). The callable is
Checkpointable: on preemption or timeout submitit calls `checkpoint()`, which requeues the same
task, and the requeued task resumes the run from its own checkpoint. Prompts travel inside
submitit's pickles, never through a shell or an sbatch line.

The driver waits with a live count, asking `squeue` which array tasks are still queued or
running (this works with or without SLURM accounting), and reads each task's outcome from its
result pickle.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from generators.errors import UserError
from generators.untrusted import brief, hidden_characters
from harness.executors import bar_label
from harness.jobs import SlurmSettings
from harness.plan import RunSpec
from harness.store import utc_stamp
from harness.worker import WorkerOptions, execute_run

LOST = "lost"  # a task that ended without a result (cancelled, killed, node failure)


try:
    from submitit.helpers import Checkpointable
except ImportError:  # submitit is a dependency; keep the module importable for --dry-run anyway
    Checkpointable = object  # type: ignore[misc,assignment]


class SlurmRunTask(Checkpointable):
    """One array task: execute_run on its spec; requeued as is on preemption/timeout."""

    def __call__(self, spec: RunSpec, opts: WorkerOptions) -> str:
        return execute_run(spec, opts)


def make_executor(settings: SlurmSettings, folder: Path, job_name: str):
    # the folder and the name become #SBATCH lines of the batch script (the settings are checked
    # when the job file loads: harness.jobs): a line break in either would start a shell command
    for what, text in (("submitit folder", str(folder)), ("job name", job_name)):
        hidden = hidden_characters(text)
        if hidden:
            raise UserError(f"executor slurm: the {what} {brief(text)} has {hidden[0][1]}, which would break "
                            f"the batch script")
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",  # never let submitit guess
                                     slurm_max_num_timeout=settings.max_num_timeout)
    params = dict(
        name=job_name,
        timeout_min=settings.time_min,
        gpus_per_node=settings.gpus_per_node,
        cpus_per_task=settings.cpus_per_task,
        slurm_array_parallelism=settings.array_parallelism,
        slurm_additional_parameters=dict(settings.additional_parameters),
    )
    if settings.partition:
        params["slurm_partition"] = settings.partition
    if settings.mem_gb is not None:
        params["mem_gb"] = settings.mem_gb
    executor.update_parameters(**params)
    return executor


def submit_slurm(specs: list[RunSpec], opts: WorkerOptions, settings: SlurmSettings, job_dir: Path,
                 job_name: str) -> list:
    """Submit one array over `specs`; returns submitit's jobs (one per task, same order)."""
    try:
        subprocess.run(["sinfo", "--version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        raise UserError("executor slurm: `sinfo` is not available here (no SLURM client on PATH)") from None
    folder = job_dir / "submitit" / utc_stamp()
    executor = make_executor(settings, folder, job_name)
    return executor.map_array(SlurmRunTask(), specs, [opts] * len(specs))


def _alive(jobs: list) -> set[str]:
    """Ids of the array tasks that squeue still lists (queued, running, requeued)."""
    arrays = sorted({j.job_id.split("_")[0] for j in jobs})
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)],
                         capture_output=True, text=True)
    if out.returncode != 0:  # ids already purged from the controller: nothing alive
        return set()
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


def _outcome(job) -> str:
    if not job.paths.result_pickle.exists():
        return LOST
    try:
        return job.result()
    except Exception as e:  # submitit re-raises the task's failure
        tqdm.write(f"task {job.job_id}: {type(e).__name__}: {str(e)[-300:]}")
        return "crashed"


def wait_slurm(jobs: list, poll_s: float, show_progress: bool = True, desc: str = "runs") -> dict[str, int]:
    """Wait until no task of `jobs` is queued or running; count outcomes as they come in."""
    finished: dict[str, str] = {}
    with tqdm(total=len(jobs), desc=f"{desc} (slurm)", unit="run", disable=not show_progress) as bar:
        while len(finished) < len(jobs):
            alive = _alive(jobs)
            for job in jobs:
                if job.job_id in finished:
                    continue
                if job.paths.result_pickle.exists() or job.job_id not in alive:
                    finished[job.job_id] = _outcome(job)
                    bar.update(1)
            counts = Counter(finished.values())
            bar.set_postfix({**counts, "queued/running": len(jobs) - len(finished)}, refresh=True)
            if len(finished) < len(jobs):
                time.sleep(poll_s)
    return dict(Counter(finished.values()))


def run_slurm(specs: list[RunSpec], opts: WorkerOptions, settings: SlurmSettings, job_dir: Path,
              wait: bool = True, show_progress: bool = True, job_name: str | None = None) -> dict[str, int]:
    if not specs:
        return {}
    jobs = submit_slurm(specs, opts, settings, job_dir, job_name or job_dir.name)
    print(f"submitted SLURM array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks); "
          f"submitit folder {jobs[0].paths.folder}", file=sys.stderr)
    if not wait:
        return {"submitted": len(jobs)}
    return wait_slurm(jobs, settings.poll_s, show_progress, bar_label(opts))
