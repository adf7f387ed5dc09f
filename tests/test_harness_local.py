"""The local executor through the real CLI: kill -9 and resume, two workers at once, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.jobs import load_job
from harness.plan import plan_job

REPO = Path(__file__).resolve().parents[1]
COUNTER = "harness.workloads:counter"


def _write_job(tmp_path: Path, prompts: list[str], steps: int, **extra) -> Path:
    pfile = tmp_path / "cat.txt"
    pfile.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    job = {"name": "t", "prompts": str(pfile), "methods": ["sds"], "models": "tiny",
           "overrides": {"steps": steps}, **extra}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _env(sleep_s: float) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HARNESS_COUNTER_SLEEP_S": str(sleep_s)}


def _harness(job: Path, results: Path, sleep_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "benchmark", "--job", str(job), "--results",
                             str(results), "--workload", COUNTER], cwd=REPO, env=_env(sleep_s),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _executions(run_dir: Path) -> list[tuple[int, int]]:
    return [(int(p), int(s)) for p, s in (ln.split() for ln in (run_dir / "executions.log").read_text().splitlines())]


def _wait(predicate, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _step(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "counter.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def test_kill_9_mid_run_then_rerun_resumes_and_runs_everything_exactly_once(tmp_path):
    steps = 30
    job = _write_job(tmp_path, ["a red apple", "a blue car", "a green tree"], steps)
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    dirs = [s.run_dir(results) for s in specs]
    first = _harness(job, results, sleep_s=0.03)
    try:
        assert _wait(lambda: _step(dirs[1]) >= 5, 60), first.stdout and first.stdout.read()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = _step(dirs[1])
    assert 5 <= killed_at < steps
    assert json.loads((dirs[1] / "status.json").read_text())["state"] == "running"
    assert not (dirs[2] / "executions.log").exists()

    second = _harness(job, results, sleep_s=0.0)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out

    for d in dirs:
        assert json.loads((d / "status.json").read_text())["state"] == "done"
        rows = json.loads((d / "rows.json").read_text())["rows"]
        assert [r["step"] for r in rows] == list(range(steps))  # no duplicate rows
    # run 0 ran once, by the first process only; run 2 once, by the second only
    assert [s for _, s in _executions(dirs[0])] == list(range(steps))
    assert {p for p, _ in _executions(dirs[0])} == {first.pid}
    assert {p for p, _ in _executions(dirs[2])} == {second.pid}
    # run 1 resumed from its checkpoint, not from step 0
    resumed = [s for p, s in _executions(dirs[1]) if p == second.pid]
    assert resumed[0] == killed_at > 0 and resumed == list(range(killed_at, steps))
    history = json.loads((dirs[1] / "attempts.json").read_text())["history"]
    assert [h["outcome"] for h in history] == ["interrupted", "done"]


def test_two_harness_processes_on_one_job_never_run_a_run_twice(tmp_path):
    steps = 10
    job = _write_job(tmp_path, [f"prompt number {i}" for i in range(10)], steps)
    results = tmp_path / "results"
    first_run = plan_job(load_job(job))[0].run_dir(results)
    # the first is slow (3 s a run, 30 s for all ten alone) so that the second, started once the
    # first holds a run, still finds runs to take on a loaded machine (its start-up takes seconds)
    procs = [_harness(job, results, sleep_s=0.3)]
    assert _wait(lambda: (first_run / "executions.log").exists(), 60)
    procs.append(_harness(job, results, sleep_s=0.05))
    outs = [p.communicate(timeout=120)[0] for p in procs]
    # a worker that skipped runs held by the other may end before them (exit 1), never with an error
    assert all(p.returncode in (0, 1) for p in procs), outs
    assert any(p.returncode == 0 for p in procs), outs
    pids = set()
    for spec in plan_job(load_job(job)):
        d = spec.run_dir(results)
        assert json.loads((d / "status.json").read_text())["state"] == "done"
        ex = _executions(d)
        assert [s for _, s in ex] == list(range(steps))  # each step executed once
        assert len({p for p, _ in ex}) == 1  # by one process
        pids |= {p for p, _ in ex}
    assert pids == {p.pid for p in procs}  # both worked, on different runs


def _tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_bad_input_exits_2_with_a_clear_message_and_touches_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0")
    job = _write_job(tmp_path, ["a red apple"], 3)
    results = tmp_path / "results"
    assert main(["benchmark", "--job", str(job), "--results", str(results), "--workload", COUNTER]) == 0
    before = _tree_digest(results)
    capsys.readouterr()

    def fails(argv: list[str], *needles: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and all(n in err for n in needles), err
        assert _tree_digest(results) == before

    common = ["--results", str(results), "--workload", COUNTER]
    fails(["benchmark", "--method", "sdss", *common], "unknown method 'sdss'", "valid methods", "anchords-ipa")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "t", "methods": ["sds"], "executor": {"kindd": "local"}}))
    fails(["benchmark", "--job", str(bad), *common], str(bad), "executor.kindd")
    fails(["benchmark", "--job", str(tmp_path / "missing.yaml"), *common], "missing.yaml", "not found")
    fails(["benchmark", "--method", "sds", "--prompts", str(tmp_path / "nope.txt"), *common], "nope.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"a red apple\n\xff\xfe\n")
    fails(["benchmark", "--method", "sds", "--prompts", str(binary), *common], "binary.txt:2", "UTF-8")
    fails(["benchmark", "--job", str(job), "--set", "guidance.nope=1", *common], "unknown config key")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fails(["benchmark", "--job", str(job), "--results", str(blocker / "results"), "--workload", COUNTER],
          "cannot be written")
    fails(["status", "no-such-job", "--results", str(results)], "no job 'no-such-job'")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["benchmark", "--job", str(REPO / "jobs" / "paper-table1.yaml"), "--dry-run",
                 "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "900 runs (900 to run" in out and "anchords-cn-filter" in out and "executor local" in out
    assert not results.exists()


def test_failed_run_shows_in_status_with_its_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0")
    job = _write_job(tmp_path, ["a red apple", "this one will explode", "a blue car"], 3,
                     executor={"max_attempts": 2})
    results = tmp_path / "results"
    assert main(["benchmark", "--job", str(job), "--results", str(results), "--workload", COUNTER]) == 1
    capsys.readouterr()
    assert main(["status", "t", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "RuntimeError: explode" in out and "[2/2 gave up]" in out
    row = next(line for line in out.splitlines() if line.startswith("│ sds"))
    assert [c.strip() for c in row.split("│")[1:-1]] == ["sds", "cat", "2", "0", "1", "0", "3"]


def test_local_workers_run_every_run_once_in_separate_processes(tmp_path):
    """executor.local.workers: 2 runs go to two spawned worker processes; each run once, by one."""
    steps = 5
    job = _write_job(tmp_path, [f"prompt number {i}" for i in range(6)], steps,
                     executor={"kind": "local", "local": {"workers": 2, "threads_per_worker": 1}})
    results = tmp_path / "results"
    proc = _harness(job, results, sleep_s=0.05)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, out
    pids = set()
    for spec in plan_job(load_job(job)):
        d = spec.run_dir(results)
        assert json.loads((d / "status.json").read_text())["state"] == "done"
        ex = _executions(d)
        assert [s for _, s in ex] == list(range(steps))
        assert len({p for p, _ in ex}) == 1
        pids |= {p for p, _ in ex}
    assert proc.pid not in pids and len(pids) == 2  # the runs ran in the two workers, not in the driver
    # a second invocation finds everything done and runs nothing
    again = _harness(job, results, sleep_s=0.05)
    assert again.communicate(timeout=180)[0] and again.returncode == 0
    assert all(len(_executions(s.run_dir(results))) == steps for s in plan_job(load_job(job)))


@pytest.mark.parametrize("workers", [1, 2])
def test_threads_per_worker_is_what_each_run_gets_in_process_or_in_a_pool(tmp_path, workers):
    """`--threads` sets torch's thread count of every run, also with one worker (runs in this
    process), and this process gets its own count back afterwards."""
    import torch

    job = _write_job(tmp_path, ["one", "two"], 2)
    results = tmp_path / "results"
    before = torch.get_num_threads()
    want = 1 if before > 1 else 2
    assert main(["benchmark", "--job", str(job), "--results", str(results), "--workload", COUNTER,
                 "--workers", str(workers), "--threads", str(want)]) == 0
    for spec in plan_job(load_job(job)):
        assert json.loads((spec.run_dir(results) / "status.json").read_text())["torch_threads"] == want
    assert torch.get_num_threads() == before


def test_local_workers_below_one_is_a_user_error(tmp_path, capsys):
    job = _write_job(tmp_path, ["a"], 2, executor={"kind": "local", "local": {"workers": 0}})
    assert main(["benchmark", "--job", str(job), "--results", str(tmp_path / "r"), "--workload", COUNTER]) == 2
    assert "executor.local.workers" in capsys.readouterr().err


def test_a_worker_killed_mid_run_is_reported_and_the_rerun_resumes(tmp_path):
    steps = 4
    job = _write_job(tmp_path, ["plain one", "sigkill two", "plain three"], steps,
                     executor={"kind": "local", "local": {"workers": 2, "threads_per_worker": 1}})
    results = tmp_path / "results"
    proc = _harness(job, results, sleep_s=0.05)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 1, out
    assert "a worker process died" in out and "run the same command again" in out
    again = _harness(job, results, sleep_s=0.05)
    out = again.communicate(timeout=180)[0]
    assert again.returncode == 0, out
    for spec in plan_job(load_job(job)):
        d = spec.run_dir(results)
        assert json.loads((d / "status.json").read_text())["state"] == "done"
        steps_run = [s for _, s in _executions(d)]
        # every step ran; the killed run resumed from its last checkpoint (every step checkpoints)
        assert sorted(set(steps_run)) == list(range(steps)) and steps_run[-1] == steps - 1
