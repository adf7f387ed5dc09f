"""`python -m harness eval` through the harness executors: resumable, locked, recorded apart.

Finished runs are made here (status.json "done" + a small gaussians.ply, what the generator
leaves) so the tests score real Gaussians with the tiny metric set without generating them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import harness.workloads as workloads
from generators.gaussians.model import Gaussians
from generators.gaussians.ply import save_ply
from harness.cli import main
from harness.jobs import load_job
from harness.plan import plan_job
from harness.store import EVAL_LOCK_SUFFIX, run_lock
from harness.worker import LOCKED, NOT_GENERATED, EvalOptions, WorkerOptions, execute_run

REPO = Path(__file__).resolve().parents[1]
SCORE_COUNTER = "harness.workloads:score_counter"
CLIP_VIEWS = 3
# CPU-sized protocols: 42 points x 2 fields of view at 12 px, 3 CLIP views at 16 px
SMALL = ["quality.icosphere_subdivisions=1", "quality.fov_y_deg=[60.0, 36.0]", "quality.width=12",
         "quality.height=12", f"clip.num_views={CLIP_VIEWS}", "clip.width=16", "clip.height=16"]
TINY = ["--models", "tiny", "--stages", "quality,clip", *(a for s in SMALL for a in ("--set", s))]


def _job(tmp_path: Path, prompts: list[str], executor: dict | None = None) -> Path:
    pfile = tmp_path / "cat.txt"
    pfile.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    job = {"name": "ev", "prompts": str(pfile), "methods": ["sds"], "models": "tiny", "overrides": {"steps": 3}}
    if executor:
        job["executor"] = executor
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _finish(run_dir: Path, prompt: str, n: int = 60) -> None:
    """What a finished generation leaves: gaussians.ply, status.json done, the harness's attempts."""
    run_dir.mkdir(parents=True)
    g = torch.Generator().manual_seed(n)
    pts = torch.randn(n, 3, generator=g) * 0.4
    save_ply(Gaussians.from_points(pts, torch.rand(n, 3, generator=g), torch.full((n,), 0.08), 0.8),
             run_dir / "gaussians.ply")
    (run_dir / "status.json").write_text(json.dumps({"state": "done", "prompt": prompt, "method": "sds",
                                                     "seed": 0, "models": "tiny"}))
    (run_dir / "attempts.json").write_text(json.dumps({"count": 1, "failures": 0, "history": [{"outcome": "done"}]}))


def _digest(run_dir: Path, *names: str) -> dict:
    return {n: hashlib.sha256((run_dir / n).read_bytes()).hexdigest() for n in names}


def _eval_attempts(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval_attempts.json").read_text())


@pytest.fixture
def fresh_metric_cache(monkeypatch):
    """An empty per-process model cache, and a count of the metric model loads."""
    import metrics.models

    monkeypatch.setattr(workloads, "_metrics_cache", {})
    real = metrics.models.load_metric_models
    loads = []

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(metrics.models, "load_metric_models", counting)
    return loads


def test_eval_scores_generated_runs_once_lists_the_others_and_force_rescores(tmp_path, capsys, fresh_metric_cache):
    job = _job(tmp_path, ["a red apple", "a blue car", "a green tree"])
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    dirs = [s.run_dir(results) for s in specs]
    for spec, d in zip(specs[:2], dirs[:2]):
        _finish(d, spec.prompt)
    before = [_digest(d, "status.json", "attempts.json", "gaussians.ply") for d in dirs[:2]]
    argv = ["eval", str(job), "--results", str(results), *TINY]

    assert main(argv) == 0  # every generated run scored; the third is listed, not scored
    out = capsys.readouterr().out
    assert f"not generated: {specs[2].rel_dir}" in out and "2 scored" in out
    assert not dirs[2].exists()
    assert len(fresh_metric_cache) == 1  # one load for both runs (same process)
    assert fresh_metric_cache[0][1] == ["quality", "clip"]
    stamps = []
    for d, digest in zip(dirs[:2], before):
        m = json.loads((d / "metrics.json").read_text())
        assert m["quality"]["status"] == m["clip"]["status"] == "done" and "alignment" not in m
        assert m["quality"]["model_set"] == "tiny"
        # the --set overrides reached the workload: 3 CLIP views, 42 points x 2 fields of view
        assert len(m["clip"]["view_scores"]) == CLIP_VIEWS
        assert len(m["quality"]["view_scores"]) == 42 and len(m["quality"]["view_scores"][0]) == 2
        assert _digest(d, "status.json", "attempts.json", "gaussians.ply") == digest  # generation untouched
        history = _eval_attempts(d)["history"]
        assert [h["outcome"] for h in history] == ["done"] and history[0]["executor"] == "local"
        assert history[0]["stages"] == ["quality", "clip"] and history[0]["pid"] == os.getpid()
        stamps.append(((d / "metrics.json").stat().st_mtime_ns, (d / "eval_attempts.json").stat().st_mtime_ns))

    assert main(argv) == 0  # nothing left to score: nothing submitted, nothing loaded, nothing written
    assert "0 run(s) to score" in capsys.readouterr().out
    assert len(fresh_metric_cache) == 1
    assert [((d / "metrics.json").stat().st_mtime_ns, (d / "eval_attempts.json").stat().st_mtime_ns)
            for d in dirs[:2]] == stamps

    assert main([*argv, "--force"]) == 0  # re-scored: new finished_at, a second eval attempt
    for d in dirs[:2]:
        assert (d / "metrics.json").stat().st_mtime_ns > stamps[0][0]
        assert [h["outcome"] for h in _eval_attempts(d)["history"]] == ["done", "done"]
    assert len(fresh_metric_cache) == 1  # the worker process kept its models


def test_eval_failures_are_recorded_apart_retried_when_transient_and_leave_status_alone(tmp_path, capsys, monkeypatch):
    import metrics.evaluate

    job = _job(tmp_path, ["a red apple", "a blue car"])
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    good, broken = (s.run_dir(results) for s in specs)
    _finish(good, specs[0].prompt)
    _finish(broken, specs[1].prompt)
    (broken / "gaussians.ply").unlink()  # "done" but unusable: a deterministic failure
    before = [_digest(d, "status.json", "attempts.json") for d in (good, broken)]
    real = metrics.evaluate.evaluate_run
    calls = []

    def flaky(run_dir, *args, **kwargs):  # the first scoring of the good run hits a transient error
        calls.append(Path(run_dir))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: an illegal memory access (transient)")
        return real(run_dir, *args, **kwargs)

    monkeypatch.setattr(metrics.evaluate, "evaluate_run", flaky)
    assert main(["eval", str(job), "--results", str(results), *TINY]) == 2  # the broken run needs the user
    out = capsys.readouterr().out
    assert f"not scored: {specs[1].rel_dir}" in out and "gaussians.ply is missing" in out

    rec = _eval_attempts(good)
    assert [h["outcome"] for h in rec["history"]] == ["failed", "done"] and rec["failures"] == 1
    assert "illegal memory access" in rec["last_reason"]
    assert json.loads((good / "metrics.json").read_text())["clip"]["status"] == "done"

    rec = _eval_attempts(broken)
    assert rec["failures"] == 0 and len(rec["history"]) == 1  # a UserError is not retried, spends no attempt
    assert "RunNotReady" in rec["last_reason"] and "gaussians.ply is missing" in rec["user_error"]
    assert "Traceback" in rec["traceback_tail"]
    assert not (broken / "metrics.json").exists()
    assert [_digest(d, "status.json", "attempts.json") for d in (good, broken)] == before


def test_eval_lock_and_generation_lock_are_separate(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0")
    job = _job(tmp_path, ["a red apple", "a blue car"])
    results = tmp_path / "results"
    done_spec, new_spec = plan_job(load_job(job))
    done_dir, new_dir = done_spec.run_dir(results), new_spec.run_dir(results)
    _finish(done_dir, done_spec.prompt)
    ev = EvalOptions(models="tiny", stages=("quality", "clip"))
    scoring = WorkerOptions(results=str(results), workload=SCORE_COUNTER, evaluation=ev)
    generating = WorkerOptions(results=str(results), workload="harness.workloads:counter")

    held = run_lock(done_dir, EVAL_LOCK_SUFFIX)
    held.acquire()  # another eval worker is scoring the finished run
    try:
        assert execute_run(done_spec, scoring) == LOCKED
        assert not (done_dir / "eval_attempts.json").exists() and not (done_dir / "metrics.json").exists()
        assert execute_run(new_spec, generating) == "done"  # generation of another run goes on
    finally:
        held.release()
    gen = run_lock(new_dir)
    gen.acquire()  # a generation worker holds the other run: scoring the finished one goes on
    try:
        assert execute_run(done_spec, scoring) == "done"
    finally:
        gen.release()
    m = json.loads((done_dir / "metrics.json").read_text())
    assert [m[s]["score"] for s in ("quality", "clip")] == [float(len(done_spec.prompt))] * 2
    # a run whose generation is not done is never scored
    shutil.rmtree(new_dir)
    assert execute_run(new_spec, scoring) == NOT_GENERATED and not new_dir.exists()


def test_bad_eval_input_exits_2_and_writes_nothing(tmp_path, capsys):
    job = _job(tmp_path, ["a red apple"])
    results = tmp_path / "results"
    (spec,) = plan_job(load_job(job))
    _finish(spec.run_dir(results), spec.prompt)
    before = sorted(p.name for p in spec.run_dir(results).iterdir())
    common = ["eval", str(job), "--results", str(results), "--models", "tiny"]
    for extra, needle in ((["--stages", "quality,beauty"], "unknown stage(s) beauty"),
                          (["--executor", "cloud"], "unknown executor 'cloud'"),
                          (["--set", "quality.widht=12"], "widht"),
                          (["--workers", "0"], "executor.local.workers"),
                          (["--threads", "0"], "executor.local.threads_per_worker"),
                          (["--models", "no-such-set"], "no-such-set")):
        assert main([*common, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err, err
    assert main(["eval", "no-such-job", "--results", str(results)]) == 2
    assert "no job 'no-such-job'" in capsys.readouterr().err
    assert sorted(p.name for p in spec.run_dir(results).iterdir()) == before
    assert sorted(p.name for p in results.iterdir()) == ["runs"]


def _eval_process(job: Path, results: Path, sleep_s: float, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HARNESS_COUNTER_SLEEP_S": str(sleep_s),
           **extra_env}
    return subprocess.Popen([sys.executable, "-m", "harness", "eval", str(job), "--results", str(results),
                             "--workload", SCORE_COUNTER, *TINY], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_eval_processes_never_score_one_run_twice(tmp_path):
    job = _job(tmp_path, [f"prompt number {i}" for i in range(8)])
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    for spec in specs:  # score_counter needs no Gaussians: status.json "done" is enough
        d = spec.run_dir(results)
        d.mkdir(parents=True)
        (d / "status.json").write_text(json.dumps({"state": "done", "prompt": spec.prompt}))
    first_log = specs[0].run_dir(results) / "eval_executions.log"
    # the first scorer waits after its first stage until the second has scored one, so both take
    # part however loaded the machine is (a timing-only version failed under load)
    signal = str(tmp_path / "second_scored")
    procs = [_eval_process(job, results, 0.1, HARNESS_COUNTER_WAIT_FOR=signal)]
    end = time.monotonic() + 60
    while not first_log.exists() and time.monotonic() < end:
        time.sleep(0.02)
    procs.append(_eval_process(job, results, 0.1, HARNESS_COUNTER_SIGNAL=signal))
    outs = [p.communicate(timeout=120)[0] for p in procs]
    # a process that skipped runs held by the other may end before they are scored (exit 1)
    assert all(p.returncode in (0, 1) for p in procs) and any(p.returncode == 0 for p in procs), outs
    pids = set()
    for spec in specs:
        lines = [ln.split() for ln in (spec.run_dir(results) / "eval_executions.log").read_text().splitlines()]
        assert [s for _, s in lines] == ["quality", "clip"]  # each stage scored once
        assert len({p for p, _ in lines}) == 1  # by one process
        pids |= {int(p) for p, _ in lines}
    assert pids == {p.pid for p in procs}  # both worked, on different runs


@pytest.mark.slow  # a local Ray, and the tiny metric models loaded in its workers
def test_eval_through_ray_workers(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # Ray's workers import the harness by name
    job = _job(tmp_path, ["a red apple", "a blue car"],
               {"kind": "local", "ray": {"num_gpus": 0, "num_cpus": 1, "local_num_cpus": 2}})
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    for spec in specs:
        _finish(spec.run_dir(results), spec.prompt)
    assert main(["eval", str(job), "--executor", "ray", "--results", str(results), *TINY]) == 0
    for spec in specs:
        d = spec.run_dir(results)
        m = json.loads((d / "metrics.json").read_text())
        assert m["quality"]["status"] == m["clip"]["status"] == "done"
        assert len(m["clip"]["view_scores"]) == CLIP_VIEWS
        (attempt,) = _eval_attempts(d)["history"]
        assert attempt["executor"] == "ray" and attempt["outcome"] == "done"
        assert attempt["pid"] != os.getpid()  # scored in a Ray worker process


def _idle_slurm_node() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return out.returncode == 0 and "idle" in out.stdout


@pytest.mark.slurm
@pytest.mark.skipif(not _idle_slurm_node(), reason="no SLURM here (harness/slurm/local-cluster.sh start)")
def test_eval_through_slurm_array_tasks(tmp_path, monkeypatch):
    # the array tasks inherit this environment through sbatch
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(REPO)
    slurm = {"kind": "slurm", "max_attempts": 2,
             "slurm": {"time_min": 10, "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 2,
                       "array_parallelism": 2, "poll_s": 0.5}}
    job = _job(tmp_path, ["a red apple", "a blue car", "a green tree"], slurm)
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    for spec in specs[:2]:
        _finish(spec.run_dir(results), spec.prompt)
    assert main(["eval", str(job), "--results", str(results), *TINY]) == 0  # the job's executor: slurm
    for spec in specs[:2]:
        d = spec.run_dir(results)
        m = json.loads((d / "metrics.json").read_text())
        assert m["quality"]["status"] == m["clip"]["status"] == "done"
        assert len(m["clip"]["view_scores"]) == CLIP_VIEWS
        (attempt,) = _eval_attempts(d)["history"]
        assert attempt["executor"] == "slurm" and attempt["outcome"] == "done" and attempt["pid"] != os.getpid()
    assert not specs[2].run_dir(results).exists()
    (folder,) = (results / "ev" / "submitit").iterdir()  # one array, for the two generated runs
    assert len(list(folder.glob("*_result.pkl"))) == 2


def test_a_judge_without_key_stops_eval_before_any_captioning(tmp_path, capsys, monkeypatch):
    import metrics.captioner

    job = _job(tmp_path, ["a red apple"])
    results = tmp_path / "results"
    (spec,) = plan_job(load_job(job))
    _finish(spec.run_dir(results), spec.prompt)
    before = sorted(p.name for p in spec.run_dir(results).iterdir())
    monkeypatch.delenv("T3B_TEST_NO_KEY", raising=False)
    monkeypatch.setattr(metrics.captioner.Captioner, "from_folder",
                        classmethod(lambda *a, **k: (_ for _ in ()).throw(AssertionError("captioner loaded"))))
    code = main(["eval", str(job), "--results", str(results), "--models", "tiny", "--stages", "alignment",
                 "--set", "alignment.judge.kind=openai", "--set", "alignment.judge.api_key_env=T3B_TEST_NO_KEY",
                 "--set", "alignment.judge.base_url=https://api.openai.com/v1"])
    err = capsys.readouterr().err
    assert code == 2 and "$T3B_TEST_NO_KEY is not set" in err and "nothing submitted" in err
    assert sorted(p.name for p in spec.run_dir(results).iterdir()) == before
