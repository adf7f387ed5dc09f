"""The Ray executor on a local Ray with 2 CPUs: the smoke job completes, a failing run is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.benchmark import Settings, benchmark
from harness.jobs import job_to_dict, load_job

REPO = Path(__file__).resolve().parents[1]
COUNTER = "harness.workloads:counter"

pytest.importorskip("ray")


@pytest.mark.slow  # starting and stopping a local Ray takes ~5-20 s on 2 cores
def test_smoke_job_completes_through_ray_with_two_local_cpus(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0.02")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # Ray's workers import the harness by name
    job = load_job(REPO / "jobs" / "smoke.yaml")
    job.executor.kind = "ray"
    job.executor.ray.local_num_cpus = 2
    job.executor.max_attempts = 2
    job.overrides = {**job.overrides, "steps": 6}
    # one extra run that fails: recorded by the task, the others still complete
    pfile = tmp_path / "demo-plus.txt"
    pfile.write_text("A cactus with pink flowers\nthis one will explode\n", encoding="utf-8")
    job.prompts = str(pfile)
    path = tmp_path / "smoke-ray.yaml"
    path.write_text(yaml.safe_dump(job_to_dict(job)))
    results = tmp_path / "results"
    _, specs, outcomes = benchmark(Settings(job=str(path), results=results, workload=COUNTER))
    assert len(specs) == 4 and outcomes == {"done": 2, "failed": 2}
    pids = set()
    for spec in specs:
        d = spec.run_dir(results)
        attempts = json.loads((d / "attempts.json").read_text())
        assert attempts["history"][-1]["executor"] == "ray"
        if "explode" in spec.prompt:
            assert attempts["failures"] == 2 and "explode" in attempts["last_reason"]
        else:
            assert json.loads((d / "status.json").read_text())["state"] == "done"
            assert [r["step"] for r in json.loads((d / "rows.json").read_text())["rows"]] == list(range(6))
        pids |= {h["pid"] for h in attempts["history"]}
    import os

    assert os.getpid() not in pids  # the runs ran in Ray's worker processes
