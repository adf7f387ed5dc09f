"""CLIP score: the cosine, the tiny open_clip model through the local-dir loader, the views."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from metrics.cameras import clip_cameras  # noqa: E402
from metrics.clip_score import build_tiny_clip, cosine_scores, load_clip  # noqa: E402
from metrics.config import ClipConfig  # noqa: E402


def test_cosine_scores_known_values():
    img = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]])
    out = cosine_scores(img, torch.tensor([5.0, 0.0]))
    np.testing.assert_allclose(out.numpy(), [1.0, 0.0, 1 / math.sqrt(2), -1.0], atol=1e-12)  # raw, not clipped
    feats = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(cosine_scores(feats, feats[1]).numpy()[1], 1.0, atol=1e-12)


def test_tiny_clip_build_is_deterministic(tmp_path):
    build_tiny_clip(tmp_path / "a", seed=0)
    build_tiny_clip(tmp_path / "b", seed=0)
    build_tiny_clip(tmp_path / "c", seed=1)
    read = lambda p: (p / "open_clip_model.safetensors").read_bytes()  # noqa: E731
    assert read(tmp_path / "a") == read(tmp_path / "b")
    assert read(tmp_path / "a") != read(tmp_path / "c")


@pytest.fixture(scope="module")
def tiny_clip():
    from metrics.models import load_metric_models

    return load_metric_models("tiny", ("clip",), "cpu").clip


def test_tiny_clip_score_is_the_cosine_of_the_encoders(tiny_clip):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    scores = tiny_clip.score("a red apple", images)
    img = tiny_clip.encode_images(images)
    txt = tiny_clip.encode_text("a red apple")
    manual = (img / img.norm(dim=-1, keepdim=True)) @ (txt / txt.norm())
    np.testing.assert_allclose(scores.numpy(), manual.double().numpy(), atol=1e-6)
    assert torch.equal(tiny_clip.score("a red apple", images), scores)  # deterministic
    assert not torch.allclose(tiny_clip.score("a wooden chair", images), scores)
    # identical images give identical scores; the text changes them
    same = tiny_clip.score("a red apple", np.repeat(images[:1], 2, axis=0))
    assert same[0] == same[1] == pytest.approx(float(scores[0]), abs=1e-6)
    assert tiny_clip.info["model"] == "tiny-clip" and tiny_clip.info["pretrained"] == "tiny-random"


def test_tiny_clip_reloads_identically(tiny_clip):
    from metrics.models import load_metric_models

    again = load_metric_models("tiny", ("clip",), "cpu").clip
    images = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert torch.equal(again.score("a cup", images), tiny_clip.score("a cup", images))


def test_clip_views():
    cfg = ClipConfig()
    cams = clip_cameras(cfg)
    assert len(cams) == 8
    np.testing.assert_allclose(cams.distance.numpy(), 2.2, rtol=1e-6)
    np.testing.assert_allclose(cams.elevation_deg.numpy(), 15.0, atol=1e-4)
    np.testing.assert_allclose(np.diff(np.unwrap(np.deg2rad(cams.azimuth_deg.numpy()))), 2 * math.pi / 8, atol=1e-5)
    assert cams.azimuth_deg[0] == pytest.approx(0.0, abs=1e-5)  # the first view is the front (+x)
    np.testing.assert_allclose(cams.fov_y.numpy(), math.radians(60.0), rtol=1e-6)


def test_load_clip_local_dir_requires_config(tmp_path):
    with pytest.raises(Exception, match="config"):
        load_clip("tiny-clip", None, tmp_path, torch.device("cpu"))


def _activations(model) -> set:
    return {type(m).__name__ for m in model.modules() if type(m).__name__ in ("GELU", "QuickGELU")}


def test_loader_builds_quick_gelu_as_the_model_set_says(tiny_clip):
    # the tiny set says quick_gelu: true, like the real set (OpenAI ViT-L/14 was trained with QuickGELU)
    assert _activations(tiny_clip.model) == {"QuickGELU"}
    assert tiny_clip.info["quick_gelu"] is True


def test_real_set_asks_for_quick_gelu_and_the_loader_passes_it(monkeypatch):
    import open_clip

    from metrics.models import load_set_spec

    clip = load_set_spec("t3bench").section("clip")
    assert clip["pretrained"] == "openai" and clip["quick_gelu"] is True
    assert clip["model"] == "ViT-L-14-quickgelu"
    seen = {}

    def fake_create(name, pretrained=None, device="cpu", force_quick_gelu=False, **kw):
        seen.update(name=name, pretrained=pretrained, force_quick_gelu=force_quick_gelu)
        raise RuntimeError("stop before any weights")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    with pytest.raises(RuntimeError, match="stop"):
        load_clip(clip["model"], clip["pretrained"], None, torch.device("cpu"), quick_gelu=clip["quick_gelu"])
    assert seen == {"name": "ViT-L-14-quickgelu", "pretrained": "openai", "force_quick_gelu": True}


def test_openai_weights_without_quick_gelu_are_refused():
    with pytest.raises(ValueError, match="QuickGELU"):
        load_clip("ViT-L-14", "openai", None, torch.device("cpu"))
