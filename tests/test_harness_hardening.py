"""Results neither lost nor mislabelled (issue: hardening): permissions, races, plans, retries, signals."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
COUNTER = "harness.workloads:counter"
SCORE_COUNTER = "harness.workloads:score_counter"


@pytest.fixture(autouse=True)
def fast_counter(monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0")


def _job(tmp_path: Path, prompts: list[str], steps: int = 3, name: str = "t", **extra) -> Path:
    pfile = tmp_path / "cat.txt"
    pfile.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    job = {"name": name, "prompts": str(pfile), "methods": ["sds"], "models": "tiny",
           "overrides": {"steps": steps}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _bench(job: Path, results: Path, *extra: str, workload: str = COUNTER) -> int:
    return main(["benchmark", "--job", str(job), "--results", str(results), "--workload", workload, *extra])


# ----------------------------------------------------------------------------------------------
# 9: outputs are as readable as the umask allows, not 0600


def test_every_file_a_run_writes_honours_the_umask(tmp_path):
    from generators.io import atomic_write_bytes

    old = os.umask(0o022)
    try:
        results = tmp_path / "results"
        assert _bench(_job(tmp_path, ["a red apple"]), results) == 0
        files = [p for p in results.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
        assert {p.name for p in files} >= {"status.json", "attempts.json", "spec.json", "counter.json",
                                           "rows.json", "plan.json", "job.yaml"}
        modes = {str(p.relative_to(results)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
        assert set(modes.values()) == {"0o644"}, modes
        os.umask(0o027)
        assert stat.S_IMODE(atomic_write_bytes(tmp_path / "x.bin", b"x").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_the_embedded_model_folders_are_built_readable(tmp_path):
    from generators.models.tiny import ensure_tiny_set

    old = os.umask(0o022)
    try:
        root = ensure_tiny_set(cache_root=tmp_path / "cache")
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o755


# ----------------------------------------------------------------------------------------------
# 10: the worker pool ends with its parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _worker_pids(run_dir: Path) -> set[int]:
    try:
        return {int(line.split()[0]) for line in (run_dir / "executions.log").read_text().splitlines()}
    except OSError:
        return set()


def test_sigterm_to_the_parent_ends_the_worker_pool_and_frees_the_run_locks(tmp_path):
    from harness.jobs import load_job
    from harness.plan import plan_job
    from harness.store import is_locked

    job = _job(tmp_path, ["a red apple", "a blue car"], steps=1000,
               executor={"kind": "local", "local": {"workers": 2, "threads_per_worker": 1}})
    results = tmp_path / "results"
    dirs = [s.run_dir(results) for s in plan_job(load_job(job))]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HARNESS_COUNTER_SLEEP_S": "0.05"}
    parent = subprocess.Popen([sys.executable, "-m", "harness", "benchmark", "--job", str(job), "--results",
                               str(results), "--workload", COUNTER], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait(lambda: all(_worker_pids(d) for d in dirs), 120), "the workers never started"
        workers = set().union(*(_worker_pids(d) for d in dirs))
        assert parent.pid not in workers and len(workers) == 2
        parent.send_signal(signal.SIGTERM)  # the parent only, as systemd or a scheduler would
        parent.wait(timeout=30)
        assert _wait(lambda: not any(_alive(p) for p in workers), 10), "orphaned workers kept running"
        assert not any(is_locked(d) for d in dirs)
        assert all(json.loads((d / "status.json").read_text())["state"] == "running" for d in dirs)  # resumable
    finally:
        os.killpg(parent.pid, signal.SIGKILL) if parent.poll() is None else None
        for pid in _worker_pids(dirs[0]) | _worker_pids(dirs[1]):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
