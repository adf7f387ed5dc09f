"""metrics/toybench_rejudge.py: a job's saved judged views read again. With the judge that scored
them, the readings must be the recorded ones, view for view (the PNG is lossless and the grid is
split in the order the views were judged)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from generators.errors import UserError
from generators.toyworld.judge import load_judge
from metrics.config import ToyBenchConfig
from metrics.toybench import (_write_views_png, ground_truth_views, load_toybench_models, score_views,
                              toybench_cameras)
from metrics.evaluate import TOYBENCH_VIEWS
from metrics.toybench_rejudge import rejudge_job, rejudge_report, rejudge_run, split_views

COMMITTED = Path(__file__).resolve().parents[1] / "generators" / "models" / "toy" / "judge"


def test_split_views_is_the_inverse_of_the_views_grid():
    from generators.outputs import image_grid

    views = np.stack([np.full((4, 4, 3), i * 10, np.uint8) for i in range(6)])  # view i is all i*10
    back = split_views(image_grid(views, 3), 4, 3)
    assert back.shape == (6, 4, 4, 3)
    assert [round(float(v[0, 0, 0]) * 255) for v in back] == [0, 10, 20, 30, 40, 50]
    with pytest.raises(UserError, match="not 4 columns"):
        split_views(image_grid(views, 3), 4, 4)


def _scored_run(tmp_path: Path, name: str, caption: str, cfg, models, seed: int) -> tuple[Path, dict]:
    """A run folder holding the views of one ToyWorld sample of the caption, scored as ToyBench scores."""
    cams = toybench_cameras(cfg)
    views = (ground_truth_views(caption, cams, seed=seed).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    truth = ground_truth_views(caption, cams)
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    _write_views_png(run / TOYBENCH_VIEWS, views, cfg)
    return run, score_views(torch.from_numpy(views).float() / 255.0, truth, caption, cfg, models)


@pytest.mark.parametrize("caption", ["a red cube", "a yellow cube and a blue sphere"])
def test_the_scoring_judge_reads_the_saved_views_as_recorded(tmp_path, caption):
    cfg = ToyBenchConfig()
    models = load_toybench_models(COMMITTED, torch.device("cpu"))
    run, recorded = _scored_run(tmp_path, "r", caption, cfg, models, seed=3)
    again = rejudge_run(models.judge, run / TOYBENCH_VIEWS, caption, asdict(cfg))
    assert again["view_sets"] == recorded["view_sets"]  # view for view, in order
    assert again["alignment"] == recorded["alignment"] and again["consistency"] == recorded["consistency"]
    # under other settings the reading changes: the run's settings are used, not defaults
    strict = rejudge_run(models.judge, run / TOYBENCH_VIEWS, caption, {**asdict(cfg), "min_object_probability": 1.01})
    assert strict["alignment"] == 0.0


def test_a_job_read_again_keeps_its_rows_and_reports_both_judges(tmp_path):
    cfg = replace(ToyBenchConfig(), num_azimuths=4)
    models = load_toybench_models(COMMITTED, torch.device("cpu"))
    rows = []
    for label in ("sds", "other"):
        for i, caption in enumerate(["a red cube", "a blue sphere", "a green cone", "a yellow torus", "a red sphere"]):
            run, rec = _scored_run(tmp_path, f"{label}-{i}", caption, cfg, models, seed=i)
            rows.append({"label": label, "method": label, "category": "one-object", "prompt_index": i,
                         "prompt": caption, "seed": 0, "models": "toy", "run_dir": str(run), "toybench_status": "done",
                         "toybench_views_png": str(run / TOYBENCH_VIEWS),
                         "toybench_alignment": rec["alignment"], "toybench_consistency": rec["consistency"],
                         "toybench_settings": json.dumps(asdict(cfg))})
    (tmp_path / "results" / "job").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "results" / "job" / "scores.parquet")
    got = rejudge_job("job", COMMITTED, tmp_path / "results", log=None)
    assert [r["rejudged_alignment"] for r in got] == [r["toybench_alignment"] for r in rows]
    text = rejudge_report("job", got, COMMITTED, "sds")
    assert "0 of their 20 numbers differ" in text
    assert "## The committed judge (as recorded)" in text and "alignment %, judge" in text
    assert "| one object | **other** |" in text  # paired against sds
    Path(rows[0]["toybench_views_png"]).unlink()
    with pytest.raises(UserError, match="toybench_views.png: missing"):
        rejudge_job("job", COMMITTED, tmp_path / "results", log=None)
    with pytest.raises(UserError, match="no scores"):
        rejudge_job("nojob", COMMITTED, tmp_path / "results", log=None)
