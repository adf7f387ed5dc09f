"""Scoring a run: metrics.json with every stage, resumability, gaps recorded, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generators.errors import MissingWeightsError, UserError  # noqa: E402
from generators.gaussians.model import Gaussians  # noqa: E402
from generators.gaussians.ply import save_ply  # noqa: E402
from metrics.config import deep_merge, eval_config_from_dict  # noqa: E402
from metrics.evaluate import METRICS_FILE, RunNotReady, evaluate_run, pending_stages  # noqa: E402
from metrics.models import eval_defaults, load_metric_models  # noqa: E402
from metrics.quality import quality_score  # noqa: E402

# CPU-sized protocols: 42 points x 2 fovs at 12 px, 4 CLIP views, 12 alignment views at 16 px
SMALL = {"quality": {"icosphere_subdivisions": 1, "fov_y_deg": [60.0, 36.0], "width": 12, "height": 12,
                     "render_batch": 42, "score_batch": 84},
         "clip": {"num_views": 4, "width": 16, "height": 16}, "alignment_views": {"width": 16, "height": 16}}


def small_cfg(**over):
    return eval_config_from_dict(deep_merge(deep_merge(eval_defaults("tiny"), {"models": "tiny", **SMALL}), over))


def make_run(folder: Path, state: str = "done", prompt: str = "a red apple on a table", n: int = 80) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(len(str(folder)))
    pts = torch.randn(n, 3, generator=g) * 0.4 + torch.tensor([1.0, -2.0, 0.5])  # off-centre: normalised away
    gs = Gaussians.from_points(pts, torch.rand(n, 3, generator=g), torch.full((n,), 0.06), 0.8)
    if state == "done":
        save_ply(gs, folder / "gaussians.ply")
    status = {"state": state, "prompt": prompt, "method": "sds", "seed": 0, "models": "tiny"}
    if state == "failed":
        status["reason"] = "non-finite loss at step 3"
    (folder / "status.json").write_text(json.dumps(status))
    return folder


class _StubCaptioner:
    def describe(self, cfg):
        return {"id": "stub-captioner", "settings": {"seed": cfg.seed}}


class _StubAlignmentModels:
    captioner = _StubCaptioner()


class StubAlignment:
    """Stands in for metrics.alignment's two halves (tested by their owner): records their inputs."""

    def __init__(self):
        self.calls = []  # caption_views calls: (images, cfg, models)
        self.judged = []  # judge_captions calls: (captioned, prompt)
        self.judge_error = None

    def caption_views(self, images, cfg, models):
        self.calls.append((images, cfg, models))
        return {"captions": ["x"] * len(images), "captioner": {"id": "stub-captioner"}, "num_views": len(images)}

    def judge_captions(self, captioned, prompt, cfg, models):
        self.judged.append((captioned, prompt))
        if self.judge_error is not None:
            raise self.judge_error
        return {"score": 62.5, "rating": 3.5, "captions": captioned["captions"]}


@pytest.fixture(scope="module")
def models():
    return load_metric_models("tiny", ("quality", "clip"), "cpu")


@pytest.fixture
def stub(monkeypatch, models):
    import metrics.alignment

    fake = StubAlignment()
    monkeypatch.setattr(metrics.alignment, "caption_views", fake.caption_views)
    monkeypatch.setattr(metrics.alignment, "judge_captions", fake.judge_captions)
    monkeypatch.setattr(models, "alignment", _StubAlignmentModels())  # "loaded" alignment models
    return fake


def _forbid_scoring(monkeypatch, models):
    def boom(*a, **k):
        raise AssertionError("a stage was recomputed")

    monkeypatch.setattr(models.image_reward, "score", boom)
    monkeypatch.setattr(models.clip, "score", boom)


def test_evaluate_run_writes_every_stage_and_resumes(tmp_path, models, stub, monkeypatch):
    run = make_run(tmp_path / "run")
    cfg = small_cfg()
    record = evaluate_run(run, cfg, models)
    on_disk = json.loads((run / METRICS_FILE).read_text())
    assert on_disk == json.loads(json.dumps(record))

    q = on_disk["quality"]
    assert q["status"] == "done" and q["num_views"] == 84
    view_scores = torch.tensor(q["view_scores"])
    assert view_scores.shape == (42, 2) and torch.isfinite(view_scores).all()
    assert view_scores.std() > 0  # the views differ
    assert q["score"] == pytest.approx(quality_score(view_scores, cfg.quality)["score"])
    assert q["score"] == pytest.approx(20 * max(q["point_scores"]) + 50)
    assert q["model"]["set"] == "tiny" and q["model"]["revision"] == "local" and q["model_set"] == "tiny"
    assert q["settings"]["fov_y_deg"] == [60.0, 36.0] and "render_batch" not in q["settings"]
    assert set(q["timing"]) == {"render_s", "score_s"} and q["wall_s"] >= q["timing"]["render_s"]

    c = on_disk["clip"]
    assert c["status"] == "done" and len(c["view_scores"]) == 4
    assert c["score"] == pytest.approx(float(np.mean(c["view_scores"])))
    assert c["model"]["model"] == "tiny-clip" and c["model"]["pretrained"] == "tiny-random"

    a = on_disk["alignment"]
    assert a["status"] == "done" and a["score"] == 62.5 and a["settings"]["views"]["width"] == 16
    images, acfg, amodels = stub.calls[0]
    assert images.dtype == np.uint8 and images.shape == (12, 16, 16, 3)
    assert stub.judged[0][1] == "a red apple on a table" and amodels is models.alignment and acfg is cfg.alignment

    assert on_disk["normalization"]["scale"] > 0 and on_disk["run"]["prompt"] == "a red apple on a table"
    np.testing.assert_allclose(on_disk["normalization"]["center"], [1.0, -2.0, 0.5], atol=0.2)

    # a second call recomputes nothing and leaves the file untouched
    mtime = (run / METRICS_FILE).stat().st_mtime_ns
    _forbid_scoring(monkeypatch, models)
    assert evaluate_run(run, cfg, models) == on_disk
    assert len(stub.calls) == 1 and (run / METRICS_FILE).stat().st_mtime_ns == mtime
    assert pending_stages(run, cfg, "tiny") == []


def test_only_missing_stages_are_computed(tmp_path, models, stub, monkeypatch):
    run = make_run(tmp_path / "run")
    cfg = small_cfg()
    first = evaluate_run(run, cfg, models, stages=("quality",))
    assert set(first) >= {"quality"} and "clip" not in first and "alignment" not in first
    monkeypatch.setattr(models.image_reward, "score", lambda *a, **k: (_ for _ in ()).throw(AssertionError("quality redone")))
    second = evaluate_run(run, cfg, models)
    assert second["quality"] == first["quality"]
    assert second["clip"]["status"] == "done" and second["alignment"]["status"] == "done"


def test_changed_settings_need_force(tmp_path, models, stub):
    run = make_run(tmp_path / "run")
    evaluate_run(run, small_cfg(), models, stages=("clip",))
    other = small_cfg(clip={"elevation_deg": 30.0})
    with pytest.raises(UserError, match="--force"):
        evaluate_run(run, other, models, stages=("clip",))
    redone = evaluate_run(run, other, models, stages=("clip",), force=True)
    assert redone["clip"]["settings"]["elevation_deg"] == 30.0
    # batch sizes change no number: no mismatch
    evaluate_run(run, small_cfg(clip={"elevation_deg": 30.0, "render_batch": 1}), models, stages=("clip",))


def test_a_judge_failure_keeps_the_captions(tmp_path, models, stub):
    from metrics.judges import JudgeUnavailableError

    run = make_run(tmp_path / "run")
    cfg = small_cfg()
    stub.judge_error = JudgeUnavailableError("endpoint down")
    failed = evaluate_run(run, cfg, models, stages=("alignment",))["alignment"]
    assert failed["status"] == "failed" and "endpoint down" in failed["reason"]
    kept = json.loads((run / "alignment_captions.json").read_text())
    assert kept["captions"] == ["x"] * 12 and len(stub.calls) == 1
    stub.judge_error = None  # the judge is back: judged from the kept captions, nothing re-captioned
    done = evaluate_run(run, cfg, models, stages=("alignment",))["alignment"]
    assert done["status"] == "done" and done["score"] == 62.5 and len(stub.calls) == 1 and len(stub.judged) == 2
    # other caption settings: the kept captions do not fit, so the views are captioned again
    evaluate_run(run, small_cfg(alignment={"captioner": {"seed": 5}}), models, stages=("alignment",), force=True)
    assert len(stub.calls) == 2


def test_alignment_not_available_is_recorded_and_retried(tmp_path, models, monkeypatch):
    run = make_run(tmp_path / "run")
    monkeypatch.setitem(models.unavailable, "alignment", "metrics.alignment is not implemented yet")
    record = evaluate_run(run, small_cfg(), models, stages=("alignment",))
    assert record["alignment"] == {**record["alignment"], "status": "not-available",
                                   "reason": "metrics.alignment is not implemented yet"}
    assert "score" not in record["alignment"]  # never a made-up number
    assert pending_stages(run, small_cfg(), "tiny", ("alignment",)) == ["alignment"]


def test_unfinished_runs_are_refused_and_reported(tmp_path, models):
    running = make_run(tmp_path / "runs" / "b-running", state="running")
    failed = make_run(tmp_path / "runs" / "c-failed", state="failed")
    with pytest.raises(RunNotReady, match="not finished"):
        evaluate_run(running, small_cfg(), models)
    with pytest.raises(RunNotReady, match="non-finite"):
        evaluate_run(failed, small_cfg(), models)
    done = make_run(tmp_path / "runs" / "a-done")
    (done / "gaussians.ply").rename(done / "moved.ply")
    with pytest.raises(RunNotReady, match="gaussians.ply"):
        evaluate_run(done, small_cfg(), models)
    assert not (running / METRICS_FILE).exists() and not (failed / METRICS_FILE).exists()


def test_evaluate_runs_and_cli_over_a_folder(tmp_path, capsys):
    from metrics.__main__ import main

    root = tmp_path / "runs"
    good = make_run(root / "sds" / "single" / "apple")
    make_run(root / "sds" / "single" / "chair", state="running", prompt="a chair")
    args = ["eval", str(root), "--models", "tiny", "--stages", "quality,clip", "--device", "cpu",
            "--set", "quality.icosphere_subdivisions=1", "--set", "quality.fov_y_deg=[60.0]",
            "--set", "quality.width=8", "--set", "quality.height=8", "--set", "clip.num_views=2"]
    assert main(args) == 1  # one run could not be scored: reported, not hidden
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"scored": 1, "up_to_date": 0, "skipped": 1, "failed": 0}
    record = json.loads((good / METRICS_FILE).read_text())
    assert record["quality"]["num_views"] == 42 and len(record["clip"]["view_scores"]) == 2
    assert main(args) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["up_to_date"] == 1 and summary["scored"] == 0
    assert main(["eval", str(root), "--models", "tiny", "--set", "quality.nope=1"]) == 2


def test_missing_weights_error_names_id_and_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    src = Path(__file__).resolve().parents[1] / "metrics" / "model_sets" / "t3bench.yaml"
    with pytest.raises(MissingWeightsError) as err:
        load_metric_models(src, ("quality",), "cpu")
    message = str(err.value)
    assert "THUDM/ImageReward" in message and "revision main" in message
    assert "python -m metrics weights t3bench" in message
    with pytest.raises(MissingWeightsError, match="timm/vit_large_patch14_clip_224.openai"):
        load_metric_models("t3bench", ("clip",), "cpu")
    with pytest.raises(UserError, match="unknown metric model set"):
        load_metric_models("nope", ("quality",), "cpu")


@pytest.mark.slow
def test_real_tiny_alignment_end_to_end(tmp_path):
    """The alignment stage with metrics.alignment's tiny captioner and local judge (slow on CPU)."""
    run = make_run(tmp_path / "run")
    cfg = small_cfg()
    models = load_metric_models("tiny", ("alignment",), "cpu", cfg)
    record = evaluate_run(run, cfg, models, stages=("alignment",))
    a = record["alignment"]
    assert a["status"] == "done" and a["num_views"] == 12
    assert len(a["captions"]) == 12
    # random weights: either a rating from the reply or an explicit gap, never an invented number
    assert (a["score"] is None) == (a["rating"] is None)
