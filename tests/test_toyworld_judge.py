"""ToyWorld judge: label logic, augmentation, save/load, a short training, and the committed judge."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from generators.toyworld.config import JudgeConfig, SceneSampling, WorldConfig
from generators.toyworld.data import render_chunk
from generators.toyworld.judge import (N_OBJECTS, build_judge, gaussian_blur, labels_from_objects, load_judge,
                                       predict_sets, random_shift, save_judge)
from generators.toyworld.world import ObjectSpec

COMMITTED = Path(__file__).resolve().parents[1] / "generators" / "models" / "toy" / "judge"


def test_labels_and_predicted_sets():
    red_cube, blue_sphere = ObjectSpec("cube", "red").index, ObjectSpec("sphere", "blue").index
    lab = labels_from_objects(torch.tensor([[red_cube, -1, -1], [red_cube, blue_sphere, -1]]))
    assert lab["count"].tolist() == [1, 2]
    assert lab["objects"][1].nonzero().flatten().tolist() == sorted([red_cube, blue_sphere])
    assert lab["colours"][1].tolist() == [1, 0, 1, 0] and lab["shapes"][1].tolist() == [1, 1, 0, 0]
    logits = {"objects": torch.full((2, N_OBJECTS), -5.0), "colours": torch.zeros(2, 4), "shapes": torch.zeros(2, 4),
              "count": torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])}
    logits["objects"][:, blue_sphere] = 2.0
    logits["objects"][:, red_cube] = 1.0  # second best: kept only when the count says two
    pred = predict_sets(logits)
    assert pred["count"].tolist() == [1, 2]
    assert pred["objects"][0].nonzero().flatten().tolist() == [blue_sphere]
    assert torch.equal(pred["objects"][1], lab["objects"][1])


def test_blur_keeps_constants_and_mass_and_shift_moves_pixels():
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 0.9])), flat, atol=1e-6)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    blurred = gaussian_blur(impulse, torch.tensor([0.8]))
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5) and blurred.max() < 0.5
    img = torch.arange(25.0).reshape(1, 1, 5, 5).repeat(64, 1, 1, 1)
    shifted = random_shift(img, 1, torch.Generator().manual_seed(0))
    # each output is a window of the replicate-padded input: consecutive columns still differ by 1
    inner = shifted[:, :, 1:-1, 1:-1]
    assert torch.all((inner[..., 1:] - inner[..., :-1]) == 1.0)
    assert not torch.equal(shifted, img)


def test_save_and_load_round_trip(tmp_path):
    cfg = JudgeConfig(channels=(8, 8, 8, 8, 8, 8))
    torch.manual_seed(0)
    net = build_judge(cfg).eval()
    save_judge(tmp_path, net, cfg)
    judge = load_judge(tmp_path)
    x = torch.rand(4, 32, 32, 3)
    with torch.no_grad():
        ref = predict_sets(net(x.permute(0, 3, 1, 2)))
    got = judge.predict(x)
    for k in ref:
        assert torch.equal(ref[k], got[k])


@pytest.mark.slow  # 25-45 s on a shared 2-core machine (renders 680 images, trains 60 steps)
def test_a_short_training_learns_colours(tmp_path):
    from generators.toyworld.train_judge import train

    cfg = replace(JudgeConfig(), channels=(16, 16, 32, 32, 32, 32), train_images=480, eval_images=200, epochs=4,
                  batch_size=32, p_one=1.0)
    ev = train(cfg, WorldConfig(), tmp_path / "data", tmp_path / "judge", log=lambda m: None)
    one = ev["held_out"]["1_object"]
    assert one["images"] == 200
    assert one["colour_set"] > 0.6  # chance is 0.25
    assert (tmp_path / "judge" / "train_curve.csv").read_text().startswith("step,epoch,loss")
    assert load_judge(tmp_path / "judge").config["max_objects"] == cfg.max_objects


@pytest.mark.skipif(not (COMMITTED / "judge.safetensors").exists(), reason="judge not trained yet")
def test_committed_judge_reads_fresh_renders():
    """Fresh scenes (a seed the judge never saw) are judged correctly at the committed bars."""
    judge = load_judge(COMMITTED)
    chunk = render_chunk(300, seed=98765, world=WorldConfig(), scenes=SceneSampling(p_one=0.5))
    pred = judge.predict(chunk["images"].float() / 255.0)
    lab = labels_from_objects(chunk["objects"])
    exact = (pred["objects"] == lab["objects"]).all(1) & (pred["count"] == lab["count"])
    one, two = lab["count"] == 1, lab["count"] == 2
    assert exact[one].float().mean() >= 0.95
    assert exact[two].float().mean() >= 0.85


def test_halo_and_darkening_augmentation():
    from generators.toyworld.judge import add_halo, darken, halo_bank

    g = torch.Generator().manual_seed(0)
    rgb, alpha = halo_bank(2, 16, g, points=256)
    assert rgb.shape == (2, 3, 16, 16) and alpha.shape == (2, 1, 16, 16)
    assert float(alpha.max()) > 0.0 and float(alpha.min()) >= 0.0 and float((rgb - alpha).max()) <= 1e-5
    img = torch.full((8, 3, 16, 16), 0.35)
    img[:, 0, 4:8, 4:8] = 0.9
    assert torch.equal(add_halo(img, (rgb, alpha), 0.0, g), img)  # off
    assert not torch.equal(add_halo(img, (rgb, alpha), 1.0, g), img)
    dark = darken(img, 0.35, 1.0, 0.5, g)
    assert torch.equal(dark[:, :, 10:, 10:], img[:, :, 10:, 10:])  # the background is left alone
    assert bool((dark[:, 0, 5, 5] <= 0.9).all()) and bool((dark[:, 0, 5, 5] >= 0.45 - 1e-6).all())


def test_zoom_augmentation_scales_about_the_centre_and_fills_with_background():
    from generators.toyworld.judge import zoom

    img = torch.full((2, 3, 32, 32), 0.35)
    img[:, :, 12:20, 12:20] = 0.9  # an 8 px square in the middle
    g = torch.Generator().manual_seed(0)
    assert torch.equal(zoom(img, 0.35, 0.0, 1.25, 1.25, g), img)  # off
    big = zoom(img, 0.35, 1.0, 1.25, 1.25, g)  # a factor of exactly 1.25
    width = (big[0, 0, 16] > 0.6).sum().item()  # the square's width on the middle row
    assert width == 10  # 8 px x 1.25
    assert torch.allclose(big[:, :, :4], torch.full_like(big[:, :, :4], 0.35))  # the edges stay background
    small = zoom(img, 0.35, 1.0, 0.5, 0.5, g)
    assert (small[0, 0, 16] > 0.6).sum().item() == 4 and torch.allclose(small[:, :, 0], torch.full_like(small[:, :, 0], 0.35))
