"""Fault injection: every kind of file the run store reads, made empty, truncated or valid JSON of
the wrong shape, in one run of a job. `status`, `benchmark`, `eval` and `report` each answer for
that run (the file and what to do), and carry on with the others: no traceback, no lost result.

    FAULTS counts the injected faults (file x kind); each is checked against the four commands.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from harness.cli import main
from harness.report_collect import REDRAW_ADVICE
from harness.store import ADVICE as STORE_ADVICE
from harness.jobs import load_job
from harness.plan import plan_job

COUNTER = "harness.workloads:counter"
SCORE_COUNTER = "harness.workloads:score_counter"
EVAL = ["--models", "tiny", "--stages", "clip"]
COMMANDS = ("status", "benchmark", "eval", "report")
ADVICE = {**STORE_ADVICE, **REDRAW_ADVICE}  # what each answer must say to do, per file

# valid JSON of the wrong shape, per file
WRONG_SHAPE = {
    "status.json": '["done"]',
    "attempts.json": '{"count": "three", "failures": 0}',
    "eval_attempts.json": '{"count": 1, "failures": 0, "history": {"attempt": 1}}',
    "metrics.json": '{"clip": 7}',
    "plan.json": '{"job": "t", "runs": [{"no": "fields"}]}',
}
# which commands read the file of a finished run, so must name it (the others answer as before)
READERS = {
    "status.json": COMMANDS,
    "attempts.json": ("status", "benchmark", "report"),  # of an interrupted run (a done one needs none)
    "eval_attempts.json": ("eval",),
    "metrics.json": ("eval", "report"),
    "views.png": ("report",),
}
RUN_FAULTS = [(f, k) for f in ("status.json", "attempts.json", "eval_attempts.json", "metrics.json")
              for k in ("empty", "truncated", "wrong-shape")] + [("views.png", "empty"), ("views.png", "truncated")]
# valid files of the right shape with values no writer of ours leaves inside (a hand edit, another tool)
ODD_VALUES = {
    "status.json": {"state": "failed", "reason": {"why": ["a", "mapping"]}, "wall_time_s": "slow", "device": 3},
    "metrics.json": {"clip": {"status": "done", "score": "high", "model": 3, "timing": [1, 2], "reason": 5}},
}
JOB_FAULTS = [("plan.json", k) for k in ("empty", "truncated", "wrong-shape")] + [("job.yaml", "empty"), ("job.yaml", "list")]
CHECKPOINT_FAULTS = [("checkpoints/last.pt", "empty"), ("checkpoints/last.pt", "truncated")]
PLY_FAULTS = [("gaussians.ply", "empty"), ("gaussians.ply", "truncated")]
FAULTS = len(RUN_FAULTS) + len(ODD_VALUES) + len(JOB_FAULTS) + len(CHECKPOINT_FAULTS) + len(PLY_FAULTS)


def corrupt(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "wrong-shape":
        path.write_text(WRONG_SHAPE[path.name])
    elif kind == "list":
        path.write_text("- a\n- b\n")
    else:
        raise ValueError(kind)


@pytest.fixture(autouse=True)
def fast_counter(monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0")


def _job(tmp_path: Path, prompts: list[str], name: str = "t", **extra) -> Path:
    pfile = tmp_path / f"{name}.txt"
    pfile.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    job = {"name": name, "prompts": str(pfile), "methods": ["sds"], "models": "tiny", "overrides": {"steps": 3}, **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _run(capsys, *args: str) -> tuple[int, str]:
    """A command through the CLI: (exit code, stdout + stderr). A traceback fails the test."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def scored_job(tmp_path, capsys):
    """Three runs generated (counter), scored (score_counter, clip) and with a views.png each."""
    job = _job(tmp_path, ["a red apple", "a blue car", "a green tree"])
    results = tmp_path / "results"
    assert main(["benchmark", "--job", str(job), "--results", str(results), "--workload", COUNTER]) == 0
    assert main(["eval", str(job), "--results", str(results), *EVAL, "--workload", SCORE_COUNTER]) == 0
    specs = plan_job(load_job(job))
    for spec in specs:
        (spec.run_dir(results) / "views.png").write_bytes(_png())
    capsys.readouterr()
    return job, results, specs


@pytest.mark.parametrize("name,kind", RUN_FAULTS, ids=[f"{f}-{k}" for f, k in RUN_FAULTS])
def test_a_corrupt_run_file_is_answered_for_its_run_by_every_command(scored_job, capsys, name, kind):
    job, results, specs = scored_job
    victim, others = specs[0], specs[1:]
    vdir = victim.run_dir(results)
    if name == "attempts.json":  # the file matters for a run not done: make it an interrupted one
        (vdir / "status.json").write_text(json.dumps({"state": "running", "prompt": victim.prompt}))
    path = vdir / name
    corrupt(path, kind)
    answers = {}
    answers["status"] = _run(capsys, "status", "t", "--results", str(results))
    answers["benchmark"] = _run(capsys, "benchmark", "--job", str(job), "--results", str(results), "--workload", COUNTER)
    answers["eval"] = _run(capsys, "eval", str(job), "--results", str(results), *EVAL, "--workload", SCORE_COUNTER)
    answers["report"] = _run(capsys, "report", "t", "--results", str(results))
    for command, (code, text) in answers.items():
        flat = " ".join(text.split())  # rich wraps long lines
        assert "Traceback" not in text, (command, text)
        if command in READERS[name]:
            assert str(path) in flat.replace(" ", "") or str(path) in flat, (command, text)
            assert ADVICE[name][:40] in flat, (command, text)  # and what to do about it
        assert code in (0, 1, 2), command
    # the others carried on: still done, still scored, in every command's answer
    for spec in others:
        d = spec.run_dir(results)
        assert json.loads((d / "status.json").read_text())["state"] == "done"
        assert json.loads((d / "metrics.json").read_text())["clip"]["status"] == "done"
    assert "2 scored" in answers["eval"][1] or "3 scored" in answers["eval"][1]
    rows = pd.read_parquet(results / "t" / "scores.parquet")
    assert len(rows) == 3 and rows.set_index("prompt").loc[[s.prompt for s in others], "clip"].notna().all()
    if name in ("status.json", "metrics.json"):
        assert rows.set_index("prompt").loc[victim.prompt, "status"] == "corrupt"
    if name == "views.png":
        assert any((results / "t" / "grids").glob("*.png"))  # the other runs' grids were drawn
    if name == "status.json":
        assert answers["benchmark"][0] == 2 and answers["eval"][0] == 2
        # --force recovers it: the run is moved aside (kept) and made again
        assert main(["benchmark", "--job", str(job), "--results", str(results), "--workload", COUNTER, "--force"]) == 0
        assert json.loads((vdir / "status.json").read_text())["state"] == "done"
        assert list(vdir.parent.glob(f"{vdir.name}.replaced-*"))


@pytest.mark.parametrize("name", sorted(ODD_VALUES))
def test_odd_values_inside_a_run_file_break_no_command(scored_job, capsys, name):
    job, results, specs = scored_job
    (specs[0].run_dir(results) / name).write_text(json.dumps(ODD_VALUES[name]))
    for args in (["report", "t"], ["status", "t"], ["eval", str(job), *EVAL, "--workload", SCORE_COUNTER],
                 ["benchmark", "--job", str(job), "--workload", COUNTER]):  # the report first: benchmark redoes a failed run
        code, text = _run(capsys, *args, "--results", str(results))
        assert code in (0, 1, 2) and "Traceback" not in text, (args, text)
        if args[0] == "report":
            rows = pd.read_parquet(results / "t" / "scores.parquet").set_index("prompt")
    assert rows.loc[[s.prompt for s in specs[1:]], "clip"].notna().all()  # the others are in the table
    if name == "metrics.json":
        assert pd.isna(rows.loc[specs[0].prompt, "clip"])  # no odd value became a number


@pytest.mark.parametrize("name,kind", JOB_FAULTS, ids=[f"{f}-{k}" for f, k in JOB_FAULTS])
def test_a_corrupt_saved_plan_is_answered_for_its_job_and_the_other_jobs_go_on(tmp_path, capsys, name, kind):
    results = tmp_path / "results"
    jobs = [_job(tmp_path, ["a red apple"], name="t"), _job(tmp_path, ["a blue car"], name="u")]
    for job in jobs:
        assert main(["benchmark", "--job", str(job), "--results", str(results), "--workload", COUNTER]) == 0
    capsys.readouterr()
    path = results / "t" / name
    corrupt(path, kind)
    for args in (["status", "t"], ["eval", "t", *EVAL, "--workload", SCORE_COUNTER], ["report", "t"]):
        code, text = _run(capsys, *args, "--results", str(results))
        assert code == 2 and str(path) in text and "run `harness benchmark` for this job again" in text, (args, text)
        assert "Traceback" not in text
    code, text = _run(capsys, "status", "--results", str(results))  # every job: t is named, u shown
    assert code == 0 and str(path) in text and "u (" in " ".join(text.split()), text
    # benchmark rewrites the plan from the job file, and says so
    code, text = _run(capsys, "benchmark", "--job", str(jobs[0]), "--results", str(results), "--workload", COUNTER)
    assert code == 0 and ("replaced by this job's plan" in text or name == "job.yaml"), text
    assert _run(capsys, "status", "t", "--results", str(results))[0] == 0


# ----------------------------------------------------------------------------------------------
# the real generator's checkpoint and the real scorer's Gaussians (tiny models)

SMALL_RUN = {"steps": 3, "checkpoint_every": 1, "camera": {"batch_size": 1, "width": 32, "height": 32},
             "init": {"kind": "ball", "ball_points": 100, "ball_radius": 0.6},
             "views": {"width": 32, "height": 32, "turntable_frames": 0, "grid_views": 4}}
GENERATE = "harness.workloads:generate"


@pytest.mark.parametrize("name,kind", CHECKPOINT_FAULTS, ids=[f"last.pt-{k}" for _, k in CHECKPOINT_FAULTS])
def test_a_corrupt_checkpoint_fails_its_run_once_with_the_file_and_the_others_finish(tmp_path, capsys, name, kind):
    from generators.methods import resolve_run_config
    from generators.train import run_generation

    job = _job(tmp_path, ["a red apple", "a blue car"], overrides=SMALL_RUN)
    results = tmp_path / "results"
    victim, other = plan_job(load_job(job))
    vdir = victim.run_dir(results)
    cfg = resolve_run_config("sds", prompt=victim.prompt, seed=0, models="tiny", overrides=victim.overrides)
    assert run_generation(cfg, vdir, show_progress=False, stop_after=2)["state"] == "stopped"
    path = vdir / name
    corrupt(path, kind)
    code, text = _run(capsys, "benchmark", "--job", str(job), "--results", str(results), "--workload", GENERATE)
    assert code == 2 and "Traceback" not in text
    flat = "".join(text.split())
    assert str(path).replace(" ", "") in flat and "delete it: the run then starts over" in " ".join(text.split())
    assert json.loads((other.run_dir(results) / "status.json").read_text())["state"] == "done"
    attempts = json.loads((vdir / "attempts.json").read_text())
    assert attempts["failures"] == 0 and attempts["count"] == 1  # tried once, no attempt spent
    code, text = _run(capsys, "status", "t", "--results", str(results))
    assert code == 0 and str(path).replace(" ", "") in "".join(text.split()) and "needs you" in text
    code, text = _run(capsys, "eval", "t", "--results", str(results), *EVAL, "--workload", SCORE_COUNTER)
    assert code == 0 and f"not generated: {victim.rel_dir}" in text  # not scored: listed, the other scored
    code, text = _run(capsys, "report", "t", "--results", str(results))
    rows = pd.read_parquet(results / "t" / "scores.parquet").set_index("prompt")
    assert code == 0 and rows.loc[victim.prompt, "status"] == "failed" and str(path) in rows.loc[victim.prompt, "reason"]
    path.unlink()  # what the message says to do
    assert _run(capsys, "benchmark", "--job", str(job), "--results", str(results), "--workload", GENERATE)[0] == 0


@pytest.mark.parametrize("name,kind", PLY_FAULTS, ids=[f"ply-{k}" for _, k in PLY_FAULTS])
def test_corrupt_gaussians_are_answered_by_eval_for_their_run_and_the_others_are_scored(tmp_path, capsys, name, kind):
    from generators.gaussians.model import Gaussians
    from generators.gaussians.ply import save_ply

    job = _job(tmp_path, ["a red apple", "a blue car"])
    results = tmp_path / "results"
    specs = plan_job(load_job(job))
    for spec in specs:  # finished runs, as the generator leaves them
        d = spec.run_dir(results)
        d.mkdir(parents=True)
        g = torch.Generator().manual_seed(0)
        save_ply(Gaussians.from_points(torch.randn(40, 3, generator=g) * 0.4, torch.rand(40, 3, generator=g),
                                       torch.full((40,), 0.08), 0.8), d / "gaussians.ply")
        (d / "status.json").write_text(json.dumps({"state": "done", "prompt": spec.prompt}))
    path = specs[0].run_dir(results) / name
    corrupt(path, kind)
    code, text = _run(capsys, "eval", str(job), "--results", str(results), "--models", "tiny", "--stages", "clip",
                      "--set", "clip.num_views=2", "--set", "clip.width=16", "--set", "clip.height=16")
    assert code == 2 and "Traceback" not in text and str(path) in text, text
    assert "1 scored, 1 not scored" in text
    assert json.loads((specs[1].run_dir(results) / "metrics.json").read_text())["clip"]["status"] == "done"
    eval_attempts = json.loads((specs[0].run_dir(results) / "eval_attempts.json").read_text())
    assert eval_attempts["failures"] == 0 and len(eval_attempts["history"]) == 1  # not retried
    for args in (["status", str(job)], ["report", str(job)]):  # they do not read the Gaussians: the run is done
        code, text = _run(capsys, *args, "--results", str(results))
        assert code == 0 and "Traceback" not in text
