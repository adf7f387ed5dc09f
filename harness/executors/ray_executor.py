"""The Ray executor: one task per run with its GPU/CPU request, on a local Ray or a cluster.

A task that raises has already recorded its failure in the run store (the worker catches the
workload's exceptions); Ray's own `max_retries` re-runs a task whose worker process died (node
lost, out of memory), and the re-run resumes from the run's checkpoint.
"""

from __future__ import annotations

import os
from collections import Counter

from tqdm.auto import tqdm

from generators.errors import UserError
from harness.executors import bar_label
from harness.jobs import RaySettings
from harness.plan import RunSpec
from harness.worker import WorkerOptions, execute_run

# a locally started Ray: small object store (runs exchange only file names), no dashboard
LOCAL_OBJECT_STORE_BYTES = 200 << 20
LOCAL_NODE_IP = "127.0.0.1"
WAIT_TIMEOUT_S = 1.0  # how often the live count refreshes when nothing finishes
CRASHED = "crashed"


def _ray_task(spec: RunSpec, opts: WorkerOptions) -> str:
    return execute_run(spec, opts)


def _init_ray(settings: RaySettings):
    # both must be set before ray is imported (token auth asks for interactive setup otherwise)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return ray, False
    if settings.address:
        ray.init(address=settings.address, log_to_driver=True)
    else:
        ray.init(num_cpus=settings.local_num_cpus, include_dashboard=False,
                 object_store_memory=LOCAL_OBJECT_STORE_BYTES, _node_ip_address=LOCAL_NODE_IP)
    return ray, True


def run_ray(specs: list[RunSpec], opts: WorkerOptions, settings: RaySettings,
            show_progress: bool = True) -> dict[str, int]:
    ray, started = _init_ray(settings)
    try:
        resources = ray.cluster_resources()
        for name, need in (("GPU", settings.num_gpus), ("CPU", settings.num_cpus)):
            if need > resources.get(name, 0):
                raise UserError(f"each run asks Ray for {need:g} {name}(s) but the cluster has "
                                f"{resources.get(name, 0):g}: set executor.ray.num_{name.lower()}s")
        task = ray.remote(_ray_task).options(num_gpus=settings.num_gpus, num_cpus=settings.num_cpus,
                                              max_retries=settings.max_retries, retry_exceptions=False)
        refs = {task.remote(spec, opts): spec for spec in specs}
        outcomes: Counter = Counter()
        pending = list(refs)
        with tqdm(total=len(specs), desc=f"{bar_label(opts)} (ray)", unit="run", disable=not show_progress) as bar:
            while pending:
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=WAIT_TIMEOUT_S)
                for ref in ready:
                    try:
                        outcomes[ray.get(ref)] += 1
                    except ray.exceptions.RayError as e:  # the worker process died past max_retries
                        outcomes[CRASHED] += 1
                        tqdm.write(f"run {refs[ref].rel_dir}: {type(e).__name__}: {str(e)[:300]}")
                bar.update(len(ready))
                bar.set_postfix(dict(outcomes), refresh=True)
        return dict(outcomes)
    finally:
        if started:
            ray.shutdown()
