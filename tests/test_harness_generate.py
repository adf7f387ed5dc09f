"""The harness with the real generator on the embedded tiny models (local executor, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.benchmark import Settings, benchmark
from harness.jobs import load_job
from harness.plan import plan_job
from harness.worker import CACHED

SMALL = {"steps": 4, "checkpoint_every": 2, "camera": {"batch_size": 1, "width": 32, "height": 32},
         "views": {"width": 32, "height": 32, "turntable_frames": 2, "grid_views": 2},
         "init": {"growth_samples": 5000}}


@pytest.mark.slow  # two short tiny-model generations (~10-30 s on 2 cores)
def test_interrupted_generation_resumes_in_the_harness_and_is_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pfile = tmp_path / "single.txt"
    pfile.write_text("a red apple\n", encoding="utf-8")
    job_file = tmp_path / "gen.yaml"
    job_file.write_text(yaml.safe_dump({"name": "gen", "prompts": str(pfile), "methods": ["sds"],
                                        "models": "tiny", "overrides": SMALL}))
    (spec,) = plan_job(load_job(job_file))
    results = tmp_path / "results"
    run_dir = spec.run_dir(results)

    # an earlier worker stopped after 2 of 4 steps (as a kill after the checkpoint would leave it)
    from generators.methods import resolve_run_config
    from generators.train import run_generation

    cfg = resolve_run_config("sds", prompt="a red apple", seed=0, models="tiny", overrides=SMALL)
    assert run_generation(cfg, run_dir, show_progress=False, stop_after=2)["state"] == "stopped"

    _, _, outcomes = benchmark(Settings(job=str(job_file), results=results))
    assert outcomes == {"done": 1}
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and status["step"] == 4
    history = json.loads((run_dir / "attempts.json").read_text())["history"]
    assert len(history) == 1 and history[0]["checkpoint_at_start"] is True
    import pandas as pd

    log = pd.read_parquet(run_dir / "train_log.parquet")
    assert log["step"].tolist() == [0, 1, 2, 3]  # resumed: every step logged once
    for name in ("gaussians.ply", "views.png", "turntable.gif", "config.yaml", "spec.json"):
        assert (run_dir / name).stat().st_size > 0

    _, _, again = benchmark(Settings(job=str(job_file), results=results))
    assert again == {}  # nothing left to run: the done run is not even dispatched
    from harness.worker import WorkerOptions, execute_run

    assert execute_run(spec, WorkerOptions(results=str(results))) == CACHED
