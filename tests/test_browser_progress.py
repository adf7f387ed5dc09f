"""Progress you can see while a job runs: progress.json and the train log at every checkpoint,
`harness status` with step k/N, ETAs and runs made by another code version."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from generators.config import deep_merge
from generators.methods import resolve_run_config
from generators.models.loader import load_models
from generators.outputs import RUN_FILES, write_progress
from generators.train import required_components, run_generation
from harness.plan import RunSpec
from harness.status import DONE, PENDING, RUNNING, JobStatus, RunProgress, job_eta, job_status, render_status
from harness.store import run_lock

SMALL = {"checkpoint_every": 2, "camera": {"batch_size": 1, "width": 32, "height": 32},
         "init": {"kind": "ball", "ball_points": 200, "ball_radius": 0.6},
         "views": {"width": 32, "height": 32, "turntable_frames": 2, "grid_views": 2}}


def test_a_stopped_run_has_progress_and_train_log_of_its_last_checkpoint(tmp_path):
    cfg = resolve_run_config("sds", prompt="a red apple", seed=0, models="tiny",
                             overrides=deep_merge(SMALL, {"steps": 6, "log_every": 1}))
    models = load_models("tiny", required_components(cfg), "cpu")
    status = run_generation(cfg, tmp_path, show_progress=False, models=models, stop_after=4)
    assert status["state"] == "stopped"
    assert status["code_version"] and "torch" in status["packages"]  # provenance in status.json
    progress = json.loads((tmp_path / RUN_FILES["progress"]).read_text())
    assert progress["step"] == 4 and progress["steps"] == 6
    assert progress["seconds_per_step"] > 0 and progress["eta_s"] == pytest.approx(2 * progress["seconds_per_step"])
    assert progress["num_gaussians"] > 0 and progress["loss"] is not None
    log = pd.read_parquet(tmp_path / RUN_FILES["log"])
    assert log["step"].tolist() == [0, 1, 2, 3]


def test_write_progress_averages_recent_step_times(tmp_path):
    log = [{"step": i, "loss": 1.0, "num_gaussians": 10, "step_time_s": 100.0 if i < 5 else 1.0} for i in range(30)]
    p = write_progress(tmp_path, 30, 130, log)
    assert p["seconds_per_step"] == pytest.approx(1.0)  # the last 20 logged steps only
    assert p["eta_s"] == pytest.approx(100.0)


def _spec(i: int) -> RunSpec:
    return RunSpec("sds", "sds", "single", i, f"prompt {i}", 0, "tiny", {}, f"run-{i}")


def test_status_reads_progress_of_running_runs_and_other_code_versions(tmp_path, capsys):
    specs = [_spec(i) for i in range(4)]
    done, other, running = (s.run_dir(tmp_path) for s in specs[:3])
    for d, version in ((done, None), (other, "0123456789abcdef-old")):
        d.mkdir(parents=True)
        from generators.provenance import code_version

        (d / "status.json").write_text(json.dumps({"state": "done", "wall_time_s": 100.0,
                                                   "code_version": version or code_version()}))
    running.mkdir(parents=True)
    (running / "status.json").write_text(json.dumps({"state": "running"}))
    (running / "progress.json").write_text(json.dumps({"step": 30, "steps": 100, "seconds_per_step": 0.5,
                                                       "eta_s": 35.0, "loss": 0.25, "num_gaussians": 1234}))
    with run_lock(running):  # a worker holds it: the run is running
        st = job_status(specs, tmp_path, max_attempts=3)
        render_status(st, "job")
    out = capsys.readouterr().out
    assert [r.step for r in st.running] == [30] and st.running[0].eta_s == 35.0
    assert [s.run_id for s, _ in st.other_code] == ["run-1"]
    assert "step 30/100" in out and "ETA 35s" in out and "1234 Gaussians" in out
    assert "another code version" in out and "--other-code" in out and "rerun" in out
    # 1 running (35 s left) + 1 pending at the median finished run time (100 s), 1 run at a time
    assert job_eta(st) == pytest.approx(135.0)
    assert "job ETA: 2m15s" in out


def test_status_table_never_cuts_a_run_group_name(capsys, monkeypatch):
    """Printed to a pipe or log (80 columns by default), two groups that share a long prefix stay
    tell-apart: whole, not cut to the same "anchords-ipa-f…"."""
    monkeypatch.setenv("COLUMNS", "80")
    st = JobStatus()
    for label in ("anchords-ipa-finetune-cfg7.5", "anchords-ipa-filter-cfg7.5"):
        st.counts[(label, "dev-two-objects")] = Counter({DONE: 1, PENDING: 1})
    render_status(st, "job")
    out = capsys.readouterr().out
    for label in ("anchords-ipa-finetune-cfg7.5", "anchords-ipa-filter-cfg7.5"):
        assert label in out, out
    assert "anchords-ipa-f…" not in out


def test_job_eta_spreads_work_over_the_running_runs():
    st = JobStatus()
    st.counts[("sds", "single")] = Counter({RUNNING: 2, PENDING: 2, DONE: 0})
    st.running = [RunProgress(_spec(0), 10, 100, 1.0, 90.0), RunProgress(_spec(1), 50, 100, 1.0, 50.0)]
    # no finished run yet: a run takes steps x s/step = 100 s; (90 + 50 + 2 x 100) / 2 at once
    assert job_eta(st) == pytest.approx(170.0)
    assert job_eta(JobStatus()) == 0.0  # nothing planned, nothing left


def test_worker_logs_carry_utc_timestamps_and_levels(tmp_path, capsys):
    from harness.workloads import COUNTER_FAIL_WORD
    from harness.worker import WorkerOptions, execute_run

    opts = WorkerOptions(results=str(tmp_path), max_attempts=1, workload="harness.workloads:counter")
    ok = RunSpec("counter", "counter", "single", 0, "fine", 0, "tiny", {"steps": 2}, "ok")
    bad = RunSpec("counter", "counter", "single", 1, f"{COUNTER_FAIL_WORD} here", 0, "tiny", {"steps": 3}, "bad")
    assert execute_run(ok, opts) == "done" and execute_run(bad, opts) == "failed"
    assert execute_run(ok, opts) == "cached"  # a cached run logs nothing
    lines = capsys.readouterr().err.strip().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(stamp + r" INFO \[pid \d+\] harness\.worker: run runs/counter/single/ok: done \(\d+\.\d s\)",
                        lines[0]), lines
    assert re.fullmatch(stamp + r" WARNING .*attempt 1 failed: RuntimeError: .*", lines[1]), lines
    assert re.fullmatch(stamp + r" WARNING .*run runs/counter/single/bad: failed .*", lines[2]), lines
    assert len(lines) == 3


def test_benchmark_other_code_policy_reuses_or_reruns(tmp_path):
    import yaml

    from generators.provenance import code_version
    from harness.benchmark import Settings, benchmark

    (tmp_path / "cat.txt").write_text("first prompt\nsecond prompt\n")
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "t", "prompts": str(tmp_path / "cat.txt"), "methods": ["sds"],
                                   "models": "tiny", "overrides": {"steps": 2}}))
    results = tmp_path / "results"
    settings = dict(job=str(job), results=results, workload="harness.workloads:counter")
    _, specs, outcomes = benchmark(Settings(**settings))
    assert outcomes == {"done": 2}
    same, old = (s.run_dir(results) for s in specs)
    for d, version in ((same, code_version()), (old, "0ld")):
        status = json.loads((d / "status.json").read_text())
        (d / "status.json").write_text(json.dumps({**status, "code_version": version}))
    assert benchmark(Settings(**settings))[2] == {}  # reuse (the default): nothing to run
    assert benchmark(Settings(**settings, other_code="rerun"))[2] == {"done": 1}  # only the old one
    aside = list(old.parent.glob(f"{old.name}.replaced-*"))
    assert len(aside) == 1 and json.loads((aside[0] / "status.json").read_text())["code_version"] == "0ld"
    assert json.loads((same / "status.json").read_text())["code_version"] == code_version()  # untouched
