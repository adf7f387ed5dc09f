"""Alignment: scaling, tiny BLIP-2 captioner from disk (seeded), score_alignment, missing weights."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generators.errors import MissingWeightsError  # noqa: E402
from metrics.alignment import (  # noqa: E402
    AlignmentConfig,
    AlignmentModels,
    category_alignment,
    load_alignment_models,
    rating_to_score,
    score_alignment,
)
from metrics.captioner import CaptionerConfig  # noqa: E402


@pytest.mark.parametrize("rating, score", [(1, 0.0), (3, 50.0), (5, 100.0), (2, 25.0), (None, None)])
def test_rating_to_score(rating, score):
    assert rating_to_score(rating) == score


def test_category_alignment_mean_and_count():
    assert category_alignment([3, 3, 3]) == (50.0, 3)
    assert category_alignment([5, 5]) == (100.0, 2)
    score, n = category_alignment([2, 4, None, float("nan"), 5])
    assert n == 3 and score == pytest.approx((11 / 3 - 1) / 4 * 100)
    assert category_alignment([None]) == (None, 0)


@pytest.fixture(scope="module")
def tiny_captioner_dir(tmp_path_factory):
    from metrics.captioner import build_tiny_captioner

    return build_tiny_captioner(tmp_path_factory.mktemp("blip2") / "tiny", seed=0)


@pytest.fixture(scope="module")
def views():
    return np.random.default_rng(0).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)  # [12, H, W, 3]


def test_tiny_captioner_loads_from_disk_and_is_seeded(tiny_captioner_dir, views):
    from metrics.captioner import Captioner

    cfg = CaptionerConfig(seed=7, max_new_tokens=8)  # T3Bench decoding, shorter captions (CPU time)
    first = Captioner.from_folder(tiny_captioner_dir).caption(views, cfg)
    again = Captioner.from_folder(tiny_captioner_dir).caption(views, cfg)  # a fresh load
    assert len(first) == 12 and all(isinstance(c, str) for c in first)
    assert first == again
    # float input in [0, 1] is the same picture
    assert Captioner.from_folder(tiny_captioner_dir).caption(views[:2] / 255.0, cfg) == first[:2]
    # the seed is used: another seed changes some caption (sampling is real)
    other = Captioner.from_folder(tiny_captioner_dir).caption(views, CaptionerConfig(seed=8, max_new_tokens=8))
    assert other != first


class _Judge:
    name = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)

    def describe(self):
        return {"kind": "scripted", "name": self.name}

    def complete(self, messages, max_tokens):
        return self.replies.pop(0)


def test_score_alignment_record(tiny_captioner_dir, views):
    cfg = AlignmentConfig(captioner=CaptionerConfig(max_new_tokens=8))
    models = load_alignment_models(cfg, captioner_folder=tiny_captioner_dir, judge_folder=None)
    models = AlignmentModels(models.captioner, _Judge(["a merged caption", "Score: 3"]))
    rec = score_alignment(views, "a red apple", cfg, models)
    assert rec["rating"] == 3 and rec["score"] == 50.0
    assert len(rec["captions"]) == 12 and rec["merged_caption"] == "a merged caption"
    assert rec["captioner"]["settings"]["top_p"] == 0.9 and rec["captioner"]["settings"]["num_beams"] == 5
    assert rec["judge"]["name"] == "scripted" and rec["judge"]["max_retries"] == cfg.judge.max_retries

    missing = score_alignment(views, "a red apple", cfg,
                              {"captioner": models.captioner, "judge": _Judge(["m", "x", "y", "z"])})
    assert missing["rating"] is None and missing["score"] is None
    assert missing["replies"]["rating"] == ["x", "y", "z"]

    with pytest.raises(ValueError, match="12 views"):
        score_alignment(views[:5], "a red apple", cfg, models)


def test_missing_real_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="Salesforce/blip2-flan-t5-xxl"):
        load_alignment_models(AlignmentConfig())


# ----------------------------------------------------------------------------------------------
# dtypes: the config's dtype reaches from_pretrained (BLIP-2 XXL and a 7B judge: bf16 on CUDA)


def test_resolve_dtype():
    import torch

    from metrics.alignment import resolve_dtype

    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and resolve_dtype("auto", "cuda:1") == torch.bfloat16
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8", "cpu")


def _spy_from_pretrained(monkeypatch, cls):
    seen = []
    original = cls.from_pretrained.__func__

    def spy(klass, *args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return original(klass, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    return seen


def test_captioner_and_local_judge_load_in_the_configured_dtype(tiny_captioner_dir, tmp_path, monkeypatch, views):
    import torch
    from transformers import AutoModelForCausalLM, Blip2ForConditionalGeneration

    from metrics.alignment import JudgeConfig
    from metrics.judges import build_tiny_judge

    judge_dir = build_tiny_judge(tmp_path / "judge", seed=0)
    cap_seen = _spy_from_pretrained(monkeypatch, Blip2ForConditionalGeneration)
    judge_seen = _spy_from_pretrained(monkeypatch, AutoModelForCausalLM)
    cfg = AlignmentConfig(captioner=CaptionerConfig(max_new_tokens=4, dtype="bfloat16"),
                          judge=JudgeConfig(kind="local", model="tiny", dtype="bfloat16"))
    models = load_alignment_models(cfg, "cpu", captioner_folder=tiny_captioner_dir, judge_folder=judge_dir)
    assert cap_seen == [torch.bfloat16] and judge_seen == [torch.bfloat16]
    assert models.captioner.model.dtype == torch.bfloat16 and models.judge.model.dtype == torch.bfloat16
    assert len(models.captioner.caption(views[:1], cfg.captioner)) == 1  # bf16 runs on CPU too
    assert models.captioner.describe(cfg.captioner)["dtype"] == "bfloat16"
    # auto on the CPU: float32
    cap_seen.clear()
    load_alignment_models(AlignmentConfig(), "cpu", captioner_folder=tiny_captioner_dir)
    assert cap_seen == [torch.float32]


def test_auto_dtype_on_cuda_asks_for_bfloat16(tiny_captioner_dir, monkeypatch):
    """No GPU here: the model's .to('cuda') is stubbed; what matters is the dtype asked of from_pretrained."""
    import torch
    from transformers import Blip2ForConditionalGeneration

    seen = _spy_from_pretrained(monkeypatch, Blip2ForConditionalGeneration)
    monkeypatch.setattr(Blip2ForConditionalGeneration, "to", lambda self, *a, **k: self)
    load_alignment_models(AlignmentConfig(), "cuda", captioner_folder=tiny_captioner_dir)
    assert seen == [torch.bfloat16]


# ----------------------------------------------------------------------------------------------
# the captioner is recorded as what the model set loaded, not as the config's id


def test_captioner_recorded_under_the_model_sets_id(tiny_captioner_dir, tmp_path, monkeypatch):
    import yaml

    from metrics.judges import OpenAICompatibleJudge

    monkeypatch.setattr(OpenAICompatibleJudge, "check", lambda self: None)  # no endpoint here

    from metrics.config import eval_config_from_dict
    from metrics.models import load_metric_models

    set_file = tmp_path / "custom.yaml"
    set_file.write_text(yaml.safe_dump({"name": "custom", "captioner": {"path": str(tiny_captioner_dir)}}))
    cfg = eval_config_from_dict({"alignment": {"judge": {"kind": "openai", "model": "x"},
                                               "captioner": {"model_id": "another/captioner-named-by-a-setting"}}})
    models = load_metric_models(set_file, ("alignment",), "cpu", cfg)
    record = models.alignment.captioner.describe(cfg.alignment.captioner)
    assert record["path"] == str(tiny_captioner_dir)
    assert record["id"] != "another/captioner-named-by-a-setting"
