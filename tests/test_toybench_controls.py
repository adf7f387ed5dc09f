"""Every ToyBench metric orders the controls: empty, the initial ball and colour noise at the bottom,
the true scene fitted as Gaussians near the top (fast: 8 views, a small fit)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from metrics.config import ToyBenchConfig
from metrics.toybench import ground_truth_views, load_toybench_models, score_controls, toybench_cameras
from metrics.toybench_controls import CONTROLS, NEGATIVE_CONTROLS, POSITIVE_CONTROL, ControlConfig, other_caption

TOY = Path(__file__).resolve().parents[1] / "generators" / "models" / "toy"
SMALL_FIT = ControlConfig(fit_points=600, fit_views=24, fit_steps=80)
CFG = replace(ToyBenchConfig(), num_azimuths=4)  # 8 views


@pytest.fixture(scope="module")
def models():
    return load_toybench_models(TOY / "judge", torch.device("cpu"))


def test_other_caption_shares_nothing():
    assert other_caption("a red cube") == "a green sphere"
    two = other_caption("a blue sphere and a yellow cube")
    assert two == "a red cone and a green torus"  # no colour, no shape of the caption
    assert other_caption(two) != two


@pytest.mark.parametrize("caption", ["a red cube", "a blue sphere and a yellow cube"])
def test_every_metric_orders_the_controls(models, caption, tmp_path):
    cams = toybench_cameras(CFG)
    truth = ground_truth_views(caption, cams)
    scores = score_controls(caption, cams, truth, CFG, models, SMALL_FIT, cache=tmp_path)
    assert set(scores) == set(CONTROLS)
    top = scores[POSITIVE_CONTROL]
    # the positive control near the top of every metric
    assert top["alignment"] >= 0.85 and top["consistency"] >= 0.85
    assert top["janus"] == 0.0 and top["quality"] <= 0.2
    others = [c for c in CONTROLS if c not in NEGATIVE_CONTROLS]
    for bad in NEGATIVE_CONTROLS:
        s = scores[bad]
        # at the bottom: no better than any other control on any metric (higher better for the first two)
        for metric in ("alignment", "consistency"):
            assert s[metric] == 0.0 and all(s[metric] <= scores[o][metric] for o in others), (bad, metric)
        assert s["quality"] == 1.0  # the worst a view can score: as far off as nothing
        assert s["janus"] is None  # never shows the caption: cannot pass for Janus-free
    # another caption's true scene: recognised as itself, so never the caption
    assert scores["other caption"]["alignment"] == 0.0 and scores["other caption"]["read_share"] == 1.0
    # the fit was cached: a second scoring reuses it and gives the same numbers
    assert len(list(tmp_path.glob("*.pt"))) == 1
    again = score_controls(caption, cams, truth, CFG, models, SMALL_FIT, cache=tmp_path)
    assert again[POSITIVE_CONTROL] == top


def test_the_ball_control_is_the_toy_sets_initial_ball():
    """The ball control repeats the toy set's init (its settings are recorded with every score):
    a change to one without the other fails here instead of drifting apart."""
    from generators.models.spec import load_set_spec
    from metrics.toybench_controls import ControlConfig

    init, cfg = load_set_spec("toy").run_defaults["init"], ControlConfig()
    assert init["kind"] == "ball"
    assert (cfg.ball_points, cfg.ball_radius, cfg.ball_opacity) == (init["ball_points"], init["ball_radius"],
                                                                    init["opacity"])
