"""T3Bench alignment of one run: 12 views -> BLIP-2 captions -> judge merge -> judge rating 1-5.

    cfg = AlignmentConfig()                                   # T3Bench: BLIP-2 FlanT5-XXL + GPT-4
    models = load_alignment_models(cfg, device="cuda")        # captioner (+ local judge)
    record = score_alignment(images, prompt, cfg, models)     # images [12, H, W, 3]
    record["score"]                                           # (rating - 1) / 4 * 100, or None

Category alignment (t3bench-protocol.md section 3, step 5) = (mean rating - 1) / 4 * 100 over the
prompts that have a rating (`category_alignment`); T3Bench's code prints only the mean rating, the
mapping comes from the maintainer (T3Bench issue #1, paper section 4.2). The mapping is linear,
so the mean of per-run scores equals the score of the mean rating.

A rating that is missing after the judge's retries stays None here and in every table: a missing
rating is a gap to report, never a number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

from generators.errors import MissingWeightsError
from metrics.captioner import Captioner, CaptionerConfig, to_uint8_images
from metrics.judges import Judge, LocalJudge, OpenAICompatibleJudge, judge_alignment

RATING_MIN = 1  # T3Bench's rating scale
RATING_MAX = 5
LOCAL_JUDGE_ID = "Qwen/Qwen2.5-7B-Instruct"  # a default local judge; any chat LM works


@dataclass
class JudgeConfig:
    """Which judge merges and rates, and how (T3Bench: gpt-4 at temperature 0)."""

    kind: Literal["openai", "local"] = "openai"
    # openai: the model name sent to the endpoint; local: a hub id (with `revision`) or use `path`
    model: str = "gpt-4"
    revision: str = "main"  # local only
    path: Optional[str] = None  # local only: a folder; wins over `model`
    base_url: str = "https://api.openai.com/v1"  # openai only; any OpenAI-compatible server
    api_key_env: str = "OPENAI_API_KEY"  # openai only: the variable holding the key (not recorded)
    temperature: float = 0.0  # T3Bench
    seed: Optional[int] = None  # openai only: sent as `seed` when set (best effort on OpenAI)
    max_retries: int = 2  # extra attempts when a reply has no usable merge caption / rating
    merge_max_tokens: int = 128
    rating_max_tokens: int = 16  # the answer is one digit; room for "Score: 4"
    timeout_s: float = 60.0  # openai only: per request
    http_retries: int = 3  # openai only: retries on timeouts, 429 and 5xx
    backoff_s: float = 2.0  # openai only: first back-off, doubled per retry


@dataclass
class AlignmentConfig:
    """T3Bench alignment: captioner + judge settings (plain dataclass, nestable in EvalConfig)."""

    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    num_views: int = 12  # icosphere(subdivisions=0): T3Bench's 12 caption views


@dataclass
class AlignmentModels:
    captioner: Captioner
    judge: Judge


def rating_to_score(rating: Optional[float]) -> Optional[float]:
    """(r - 1) / 4 * 100: 1 -> 0, 3 -> 50, 5 -> 100; None stays None."""
    if rating is None:
        return None
    return (float(rating) - RATING_MIN) / (RATING_MAX - RATING_MIN) * 100.0


def category_alignment(ratings: Iterable[Optional[float]]) -> tuple[Optional[float], int]:
    """(alignment score of the mean rating, number of ratings used); missing ratings are skipped."""
    rated = [float(r) for r in ratings if r is not None and not (isinstance(r, float) and math.isnan(r))]
    if not rated:
        return None, 0
    return rating_to_score(sum(rated) / len(rated)), len(rated)


def make_judge(cfg: JudgeConfig, device: str = "cpu", folder: Optional[Path] = None, record: Optional[dict] = None) -> Judge:
    """The judge `cfg` names. A local judge needs its folder (see load_alignment_models)."""
    if cfg.kind == "openai":
        return OpenAICompatibleJudge(cfg.base_url, cfg.model, cfg.api_key_env, cfg.temperature, cfg.timeout_s,
                                     cfg.http_retries, cfg.backoff_s, cfg.seed)
    if cfg.kind == "local":
        if cfg.temperature != 0:
            raise ValueError("the local judge decodes greedily (T3Bench: temperature 0); set judge.temperature: 0")
        if folder is None:
            raise ValueError("a local judge needs its model folder: use load_alignment_models")
        return LocalJudge.from_folder(folder, record, device=device)
    raise ValueError(f"unknown judge kind {cfg.kind!r} (valid: openai, local)")


def _resolve(name: str, model_id: str, revision: str, path: Optional[str]) -> tuple[Path, dict]:
    """A hub id (must be in the local HF cache) or a folder -> (folder, record); the generator's
    resolver does the work so metric models fail with the same MissingWeightsError message."""
    from generators.models.loader import resolve_component
    from generators.models.spec import ComponentSpec, ModelSetSpec

    comp = ComponentSpec(id=model_id, revision=revision, path=path)
    spec = ModelSetSpec(name=f"alignment-{name}", file=Path(__file__), base=comp)
    try:
        return resolve_component(spec, name, comp, Path.cwd())
    except MissingWeightsError as e:
        where = f"folder {path}" if path else f"{model_id} (revision {revision})"
        raise MissingWeightsError(
            f"alignment {name}: {where} is not on this machine; fetch it on a machine with hub access "
            f"(`hf download {model_id} --revision {revision}` into the HF cache) or set its `path`"
        ) from e


def load_alignment_models(cfg: AlignmentConfig, device: str = "cpu", captioner_folder: Optional[Path] = None,
                          judge_folder: Optional[Path] = None, dtype: Any = None) -> AlignmentModels:
    """Captioner (+ local judge) from explicit folders, else from the ids in `cfg` (HF cache only)."""
    if captioner_folder is None:
        captioner_folder, cap_record = _resolve("captioner", cfg.captioner.model_id, cfg.captioner.revision, cfg.captioner.path)
    else:
        cap_record = {"id": cfg.captioner.model_id, "revision": "local", "path": str(captioner_folder)}
    captioner = Captioner.from_folder(captioner_folder, cap_record, device=device, dtype=dtype)
    judge_record = None
    if cfg.judge.kind == "local":
        if judge_folder is None:
            judge_folder, judge_record = _resolve("judge", cfg.judge.model, cfg.judge.revision, cfg.judge.path)
        else:
            judge_record = {"id": cfg.judge.model, "revision": "local", "path": str(judge_folder)}
    judge = make_judge(cfg.judge, device, judge_folder, judge_record)
    return AlignmentModels(captioner, judge)


def _get(models: Any, key: str) -> Any:
    value = models.get(key) if isinstance(models, dict) else getattr(models, key, None)
    return value


def score_alignment(images: Any, prompt: str, cfg: AlignmentConfig, models: Any) -> dict:
    """Caption the views, merge, rate: the alignment record of one run (JSON-serialisable).

    images: [V, H, W, 3] uint8, or float in [0, 1] (V = cfg.num_views, T3Bench: 12).
    models: AlignmentModels, or any object / dict with `captioner` and optionally `judge`
    (when absent, an OpenAI-compatible judge is built from cfg.judge).
    Returns {score, rating, captions, merged_caption, missing_reason, replies, errors, attempts,
    judge, captioner, num_views}. Raises JudgeUnavailableError when the judge never replied.
    """
    frames = to_uint8_images(images)
    if frames.shape[0] != cfg.num_views:
        raise ValueError(f"alignment expects {cfg.num_views} views, got {frames.shape[0]}")
    captioner = _get(models, "captioner")
    if captioner is None:
        raise ValueError("score_alignment needs models.captioner (load_alignment_models)")
    judge = _get(models, "judge")
    if judge is None:
        judge = make_judge(cfg.judge)
    captions = captioner.caption(frames, cfg.captioner)
    verdict = judge_alignment(judge, prompt, captions, cfg.judge.max_retries, cfg.judge.merge_max_tokens,
                              cfg.judge.rating_max_tokens)
    return {
        "score": rating_to_score(verdict["rating"]),
        "rating": verdict["rating"],
        "captions": captions,
        "merged_caption": verdict["merged_caption"],
        "missing_reason": verdict["missing_reason"],
        "replies": verdict["replies"],
        "errors": verdict["errors"],
        "attempts": verdict["attempts"],
        "judge": {**verdict["judge"], "max_retries": cfg.judge.max_retries},
        "captioner": captioner.describe(cfg.captioner),
        "num_views": int(frames.shape[0]),
        "config": asdict(cfg),
    }
