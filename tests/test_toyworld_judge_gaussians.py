"""The judge's bars on Gaussian renders (generators/toyworld/judge_validation.py), on a fixed sample:
>= 95% exact-set accuracy on fitted true scenes; a halo of faint floaters never adds an object."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from generators.toyworld.judge import load_judge
from generators.toyworld.judge_validation import (ACCURACY_BAR, CLEAN, CONDITIONS, HALOS, meets_bars,
                                                  sample_captions, validate)
from metrics.config import ToyBenchConfig
from metrics.toybench_controls import ControlConfig

COMMITTED = Path(__file__).resolve().parents[1] / "generators" / "models" / "toy" / "judge"
SMALL_FIT = ControlConfig(fit_points=600, fit_views=24, fit_steps=80)


def test_caption_sample_is_fixed_and_balanced():
    caps = sample_captions(6, seed=11)
    assert caps == sample_captions(6, seed=11) and len(set(caps)) == 6
    assert sum(" and " in c for c in caps) == 3


@pytest.mark.slow  # about a minute: 4 small fits, 6 conditions x 8 views each
def test_committed_judge_meets_the_bars_on_gaussian_renders(tmp_path):
    captions = sample_captions(4, seed=11)
    cfg = replace(ToyBenchConfig(), num_azimuths=4)  # 8 views
    result = validate(load_judge(COMMITTED), captions, cfg, SMALL_FIT, cache=tmp_path, log=None)
    assert set(result) == set(CONDITIONS)
    assert result[CLEAN]["all"]["views"] == 4 * 8
    assert result[CLEAN]["all"]["exact_set"] >= ACCURACY_BAR, result[CLEAN]
    for halo in HALOS:
        assert result[halo]["all"]["adds_object"] == 0.0, (halo, result[halo])
    assert all(meets_bars(result).values())


def test_the_larger_condition_scales_positions_and_sizes_alike():
    """'larger' is the same scene seen bigger: every position and every Gaussian's std times the factor."""
    from generators.gaussians import Gaussians
    from generators.toyworld.judge_validation import _scaled

    g = Gaussians.from_points(torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, 0.0]]), torch.full((2, 3), 0.5),
                              torch.tensor([0.05, 0.1]), opacity=0.5)
    big = _scaled(g, 1.2).state()
    assert torch.allclose(big["means"], g.state()["means"] * 1.2)
    assert torch.allclose(big["scales"].exp(), g.state()["scales"].exp() * 1.2)
    assert torch.equal(big["sh0"], g.state()["sh0"]) and torch.equal(big["opacities"], g.state()["opacities"])
