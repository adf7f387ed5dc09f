"""The two-object layout diagnostic reads side by side, stacked and the left/right order."""

from __future__ import annotations

import pytest
import torch

from generators.gaussians import Gaussians
from generators.toyworld.config import ShadingConfig
from metrics.toybench_layout import SH_C0, caption_colours, main, two_object_layout


def _two_blobs(first_at, second_at, first="red", second="blue", n=40) -> Gaussians:
    g = torch.Generator().manual_seed(0)
    means = torch.cat([torch.tensor(first_at) + 0.05 * torch.randn(n, 3, generator=g),
                       torch.tensor(second_at) + 0.05 * torch.randn(n, 3, generator=g)])
    rgb = torch.tensor([ShadingConfig().colours_rgb[first]] * n + [ShadingConfig().colours_rgb[second]] * n)
    faint = torch.full((2 * n,), 2.0)
    faint[::10] = -6.0  # a few near-transparent Gaussians, ignored
    return Gaussians(means, torch.full((2 * n, 3), -3.0), torch.tensor([[1.0, 0, 0, 0]]).repeat(2 * n, 1), faint,
                     ((rgb - 0.5) / SH_C0)[:, None, :], torch.zeros(2 * n, 0, 3))


def test_side_by_side_stacked_and_order():
    caption = "a red cube and a blue sphere"
    beside = two_object_layout(_two_blobs((0, -0.6, 0), (0, 0.6, 0)), caption)
    assert beside["vertical"] < 0.05 and beside["dy"] == pytest.approx(1.2, abs=0.05)
    swapped = two_object_layout(_two_blobs((0, 0.6, 0), (0, -0.6, 0)), caption)
    assert swapped["dy"] < -1.1  # the first-named object on the right
    stacked = two_object_layout(_two_blobs((0, 0, -0.5), (0, 0, 0.5)), caption)
    assert stacked["vertical"] > 0.95 and stacked["stacked"] and not beside["stacked"]
    # a colour that is missing from the scene, and a caption with one colour twice: not readable
    assert two_object_layout(_two_blobs((0, -0.6, 0), (0, 0.6, 0), second="green"), caption) is None
    assert caption_colours("a green cube and a green cone") is None


def test_unknown_job_is_a_clear_error(tmp_path, capsys):
    assert main(["no-such-job", "--results", str(tmp_path)]) == 2
    assert "no-such-job" in capsys.readouterr().err
