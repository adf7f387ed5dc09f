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


def _job(tmp_path: Path, prompts: list[str], steps: int = 3, name: str = "t", file: str | None = None,
         **extra) -> Path:
    pfile = tmp_path / "cat.txt"
    pfile.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    job = {"name": name, "prompts": str(pfile), "methods": ["sds"], "models": "tiny",
           "overrides": {"steps": steps}, **extra}
    path = tmp_path / (file or f"{name}.yaml")
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
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert _wait(lambda: all(_worker_pids(d) for d in dirs), 120), "the workers never started"
        workers = set().union(*(_worker_pids(d) for d in dirs))
        assert parent.pid not in workers and len(workers) == 2
        parent.send_signal(signal.SIGTERM)  # the parent only, as systemd or a scheduler would
        _, err = parent.communicate(timeout=30)
        # handled like Ctrl-C: the workers are told to stop, the command says how to resume
        assert parent.returncode == 130 and "run the same command again to resume" in err, err
        assert _wait(lambda: not any(_alive(p) for p in workers), 10), "orphaned workers kept running"
        # a dying process's files close when its last thread has gone (its leader may show as a
        # zombie a moment before): the locks come free right after
        assert _wait(lambda: not any(is_locked(d) for d in dirs), 10), "the run locks stayed held"
        states = [json.loads((d / "status.json").read_text())["state"] for d in dirs]
        assert states == ["running", "running"], states  # the counter's "not done": resumable
        # stopped mid-way, not run to the end: the last step each worker logged is far from 1000
        assert all(max(int(ln.split()[1]) for ln in (d / "executions.log").read_text().splitlines()) < 500 for d in dirs)
    finally:
        os.killpg(parent.pid, signal.SIGKILL) if parent.poll() is None else None
        for pid in _worker_pids(dirs[0]) | _worker_pids(dirs[1]):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------
# 8: a job name keeps its plan


def test_a_second_benchmark_of_the_same_name_with_other_runs_is_refused(tmp_path, capsys):
    results = tmp_path / "results"
    assert _bench(_job(tmp_path, ["a red apple", "a blue car"], steps=3), results) == 0
    plan = (results / "t" / "plan.json").read_bytes()
    other = _job(tmp_path, ["a red apple", "a blue car"], steps=4, file="other.yaml")  # other settings: other runs
    assert _bench(other, results) == 2
    err = capsys.readouterr().err
    assert "already has a saved plan" in err and "--name" in err and "--replace-plan" in err
    assert (results / "t" / "plan.json").read_bytes() == plan  # nothing replaced, nothing run
    assert len(list((results / "runs").rglob("status.json"))) == 2
    assert _bench(other, results, "--dry-run") == 2  # a dry run says so too
    assert _bench(_job(tmp_path, ["a red apple", "a blue car"], steps=3), results, "--executor", "local") == 0
    assert _bench(other, results, "--name", "t-4-steps") == 0  # a new name: a new job
    assert _bench(other, results, "--replace-plan") == 0  # or on purpose
    assert (results / "t" / "plan.json").read_bytes() != plan


# ----------------------------------------------------------------------------------------------
# 11, 15: a non-finite guidance step fails the run, once (deterministic, not retried)

SMALL_RUN = {"steps": 2, "checkpoint_every": 1, "camera": {"batch_size": 1, "width": 32, "height": 32},
             "init": {"kind": "ball", "ball_points": 100, "ball_radius": 0.6},
             "views": {"width": 32, "height": 32, "turntable_frames": 0, "grid_views": 4}}


def test_a_nan_guidance_scale_is_refused_when_planned(tmp_path, capsys):
    overrides = {**SMALL_RUN, "guidance": {"guidance_scale": float("nan")}}
    job = _job(tmp_path, ["a red apple"], overrides=overrides)
    results = tmp_path / "results"
    assert _bench(job, results, workload="harness.workloads:generate") == 2
    assert "guidance.guidance_scale" in capsys.readouterr().err
    assert not (results / "runs").exists()  # nothing written


def test_a_nan_guidance_step_fails_the_run_with_a_reason_and_is_not_retried(tmp_path, capsys, monkeypatch):
    """The run-time guard behind the planning check: a non-finite guidance step (here a nan scale let
    past the settings' domains, as a numerical blow-up would produce) fails the run once, for good."""
    import generators.config
    from harness.jobs import load_job
    from harness.plan import plan_job

    monkeypatch.setattr(generators.config, "validate_settings", lambda cfg: None)
    overrides = {**SMALL_RUN, "guidance": {"guidance_scale": float("nan")}}
    job = _job(tmp_path, ["a red apple"], overrides=overrides)
    results = tmp_path / "results"
    (spec,) = plan_job(load_job(job))
    assert _bench(job, results, workload="harness.workloads:generate") == 1
    status = json.loads((spec.run_dir(results) / "status.json").read_text())
    assert status["state"] == "failed" and "non-finite guidance at step 0" in status["reason"]
    assert "cfg_scale_diffusers=nan" in status["reason"]
    attempts = json.loads((spec.run_dir(results) / "attempts.json").read_text())
    assert attempts["count"] == 1 and attempts["failures"] == 1 and attempts["deterministic"]
    capsys.readouterr()
    assert _bench(job, results, workload="harness.workloads:generate") == 1  # given up: not run again
    assert json.loads((spec.run_dir(results) / "attempts.json").read_text())["count"] == 1
    assert "deterministic, not retried" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# 14: missing weights are found once, before dispatch, and spend no attempt


def test_missing_weights_are_found_once_before_anything_is_written(tmp_path, capsys, offline_home):
    results = tmp_path / "results"
    job = _job(tmp_path, ["a red apple", "a blue car", "a green tree"], models="sd15", overrides=SMALL_RUN)
    for _ in range(3):  # three invocations: never "given up"
        assert _bench(job, results, workload="harness.workloads:generate") == 2
        err = capsys.readouterr().err
        assert err.count("make weights MODELS=sd15") == 1, err
    assert not results.exists() or not any(results.rglob("attempts.json"))


def test_missing_metric_weights_are_found_once_before_anything_is_written(tmp_path, capsys, offline_home):
    from harness.jobs import load_job
    from harness.plan import plan_job

    job = _job(tmp_path, ["a red apple", "a blue car"])
    results = tmp_path / "results"
    for spec in plan_job(load_job(job)):
        d = spec.run_dir(results)
        d.mkdir(parents=True)
        (d / "status.json").write_text(json.dumps({"state": "done", "prompt": spec.prompt}))
    assert main(["eval", str(job), "--results", str(results), "--models", "t3bench", "--stages", "clip"]) == 2
    err = capsys.readouterr().err
    assert err.count("python -m metrics weights t3bench") == 1, err
    assert not any(results.rglob("eval_attempts.json")) and not any(results.rglob("metrics.json"))


# ----------------------------------------------------------------------------------------------
# 17: an unwritable run folder or lock fails that run only


def test_an_unwritable_run_folder_or_lock_fails_that_run_and_the_others_finish(tmp_path, capsys):
    from harness.jobs import load_job
    from harness.plan import plan_job
    from harness.store import lock_path

    job = _job(tmp_path, ["a red apple", "a blue car", "a green tree"])
    results = tmp_path / "results"
    blocked, bad_lock, fine = plan_job(load_job(job))
    # (tests may run as root, who ignores chmod: folders that cannot be written are made otherwise)
    (blocked.run_dir(results) / "spec.json").mkdir(parents=True)  # the run's first write fails
    lock_path(bad_lock.run_dir(results)).mkdir()  # a lock file that cannot be opened
    assert _bench(job, results) == 2
    err = capsys.readouterr().err
    assert f"error: run {blocked.rel_dir}: cannot write the run's files" in err
    assert f"error: run {bad_lock.rel_dir}: cannot write the run's files" in err
    assert json.loads((fine.run_dir(results) / "status.json").read_text())["state"] == "done"
    # a run folder that is a file: status, benchmark and report answer for it and go on
    blocked.run_dir(results).joinpath("spec.json").rmdir()
    blocked.run_dir(results).rmdir()
    blocked.run_dir(results).write_text("a file where the run folder should be")
    assert main(["status", "t", "--results", str(results)]) == 0
    assert f"{blocked.rel_dir}  [corrupt file]" in capsys.readouterr().out
    assert _bench(job, results) == 2
    assert main(["report", "t", "--results", str(results)]) == 0


# ----------------------------------------------------------------------------------------------
# 19: a stage without a number is not scored, in eval as in the report

NO_RATING_WORD = "unrated"


def score_without_rating(spec, run_dir, show_progress=False, evaluation=None):
    """score_counter, except that a prompt with NO_RATING_WORD gets alignment done without a
    number (what a judge that never gave a rating leaves)."""
    from harness.workloads import score_counter
    from metrics.evaluate import METRICS_FILE, read_metrics

    out = score_counter(spec, run_dir, show_progress, evaluation)
    if NO_RATING_WORD in spec.prompt:
        record = read_metrics(run_dir)
        record["alignment"].update(score=None, rating=None, missing_reason="no rating in the judge's replies")
        (Path(run_dir) / METRICS_FILE).write_text(json.dumps(record))
        out = {"state": "done"}  # as the old code judged it
    return out


def test_a_stage_without_a_score_is_not_counted_as_scored(tmp_path, capsys):
    from harness.jobs import load_job
    from harness.plan import plan_job
    from harness.report_collect import PARTIAL, collect_rows

    job = _job(tmp_path, ["a red apple", f"an {NO_RATING_WORD} car"])
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    for spec in specs:
        d = spec.run_dir(results)
        d.mkdir(parents=True)
        (d / "status.json").write_text(json.dumps({"state": "done", "prompt": spec.prompt}))
    args = ["eval", str(job), "--results", str(results), "--models", "tiny", "--stages", "quality,alignment,clip",
            "--workload", f"{__name__}:score_without_rating"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "1 scored, 0 not scored, 1 without a score" in out
    assert f"without a score (re-score with --force): {specs[1].rel_dir}  alignment: no rating" in out
    log = (specs[1].run_dir(results) / "eval_executions.log").read_text()
    assert main(args) == 1  # the same answer on the next call, and nothing recomputed
    assert "1 scored, 0 not scored, 1 without a score" in capsys.readouterr().out
    assert (specs[1].run_dir(results) / "eval_executions.log").read_text() == log
    rows = collect_rows(specs, results)
    assert [r["status"] for r in rows] == ["scored", PARTIAL]  # the report agrees
    from harness.store import stage_has_score

    assert not stage_has_score({"status": "done", "score": float("nan")})  # nor is a NaN a score


# ----------------------------------------------------------------------------------------------
# 7: `eval` racing `benchmark --force`


def test_eval_racing_benchmark_force_never_writes_old_scores_into_the_new_run(tmp_path, capsys):
    from harness.jobs import load_job
    from harness.plan import plan_job

    job = _job(tmp_path, ["a red apple"])
    results = tmp_path / "results"
    (spec,) = plan_job(load_job(job))
    run_dir = spec.run_dir(results)
    assert _bench(job, results) == 0
    old_status = (run_dir / "status.json").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HARNESS_COUNTER_SLEEP_S": "3"}
    scorer = subprocess.Popen([sys.executable, "-m", "harness", "eval", str(job), "--results", str(results),
                               "--models", "tiny", "--stages", "clip", "--workload", SCORE_COUNTER],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert _wait(lambda: (run_dir / "eval_executions.log").exists(), 60), "the scorer never started"
        time.sleep(0.5)  # well inside the 3 s scoring
        assert _bench(job, results, "--force") == 0  # while the old run is being scored
        message = capsys.readouterr().err
        out, _ = scorer.communicate(timeout=60)
    finally:
        if scorer.poll() is None:
            scorer.kill()
    assert scorer.returncode == 0, out
    # not replaced under the scorer: the scores belong to the run they were computed from
    assert (run_dir / "status.json").read_bytes() == old_status
    assert json.loads((run_dir / "metrics.json").read_text())["clip"]["status"] == "done"
    assert "harness eval` is scoring this run now" in message  # and the user is told why
    assert _bench(job, results, "--force") == 0  # now the forced redo happens
    assert not (run_dir / "metrics.json").exists()  # a new run, without the old run's scores
    (aside,) = run_dir.parent.glob(f"{run_dir.name}.replaced-*")
    assert json.loads((aside / "metrics.json").read_text())["clip"]["status"] == "done"


def test_a_report_folder_that_cannot_be_written_is_answered_without_a_traceback(tmp_path, capsys):
    results = tmp_path / "results"
    assert _bench(_job(tmp_path, ["a red apple"]), results) == 0
    (results / "t" / "scores.parquet").mkdir()  # (as root, chmod cannot make it unwritable)
    assert main(["report", "t", "--results", str(results)]) == 2
    assert "cannot write the report of t" in capsys.readouterr().err
