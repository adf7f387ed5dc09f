"""T3Bench alignment of one run: 12 views -> BLIP-2 captions -> judge merge -> judge rating 1-5.

    cfg = AlignmentConfig()                                   # T3Bench: BLIP-2 FlanT5-XXL + GPT-4
    models = load_alignment_models(cfg, device="cuda")        # captioner (+ local judge)
    record = score_alignment(images, prompt, cfg, models)     # images [12, H, W, 3]
    record["score"]                                           # (rating - 1) / 4 * 100, or None

Category alignment (docs/t3bench.md section 1) = (mean rating - 1) / 4 * 100 over the
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
from metrics.judges import Judge, JudgeTemplates, LocalJudge, OpenAICompatibleJudge, judge_alignment

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
    # a folder with merge-prefix.txt, merge-suffix.txt, rate-instruction.txt; None = T3Bench's own
    # words (prompts/t3bench/judge/). Their sha256 is recorded with every rating.
    templates: Optional[str] = None
    dtype: str = "auto"  # local only: auto = bfloat16 on CUDA (a 7B judge: ~15 GB), float32 on CPU


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
        return LocalJudge.from_folder(folder, record, device=device, dtype=resolve_dtype(cfg.dtype, device))
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


def resolve_dtype(name: str, device: Any) -> Any:
    """A torch dtype from a config name: "auto" = bfloat16 on CUDA (BLIP-2 FlanT5-XXL and a 7B judge
    fit a 40 GB card only in 16 bits; Flan-T5 overflows in float16), float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"unknown dtype {name!r} (use auto, float32, bfloat16 or float16)")
    return dtype


def load_alignment_models(cfg: AlignmentConfig, device: str = "cpu", captioner_folder: Optional[Path] = None,
                          judge_folder: Optional[Path] = None, captioner_record: Optional[dict] = None,
                          judge_record: Optional[dict] = None, check: bool = False) -> AlignmentModels:
    """Captioner (+ local judge) from explicit folders, else from the ids in `cfg` (HF cache only).

    check=True asks the judge (endpoint, key, model) before the captioner loads: JudgeUnavailableError.

    With a folder, pass the record of what that folder is (the model set's id, revision, path):
    the record names the model that was loaded, never the config's id, which may say another.
    """
    # the judge first: a judge that cannot answer must fail before BLIP-2 (tens of GB) is loaded
    if cfg.judge.kind == "local":
        if judge_folder is None:
            judge_folder, judge_record = _resolve("judge", cfg.judge.model, cfg.judge.revision, cfg.judge.path)
        elif judge_record is None:
            judge_record = {"id": None, "revision": None, "path": str(judge_folder)}
    judge = make_judge(cfg.judge, device, judge_folder, judge_record)
    if check:
        judge.check()
    if captioner_folder is None:
        captioner_folder, captioner_record = _resolve("captioner", cfg.captioner.model_id, cfg.captioner.revision,
                                                      cfg.captioner.path)
    elif captioner_record is None:
        captioner_record = {"id": None, "revision": None, "path": str(captioner_folder)}
    captioner = Captioner.from_folder(captioner_folder, captioner_record, device=device,
                                      dtype=resolve_dtype(cfg.captioner.dtype, device))
    return AlignmentModels(captioner, judge)


def _get(models: Any, key: str) -> Any:
    value = models.get(key) if isinstance(models, dict) else getattr(models, key, None)
    return value


def check_judge(cfg: JudgeConfig) -> None:
    """Ask an OpenAI-compatible judge (endpoint, key, model) without loading anything; a local
    judge is checked when it loads. Raises JudgeUnavailableError."""
    if cfg.kind == "openai":
        make_judge(cfg).check()


def caption_views(images: Any, cfg: AlignmentConfig, models: Any) -> dict:
    """The captioner's half: {captions (one per view), captioner (what captioned, with its settings), num_views}.

    images: [V, H, W, 3] uint8, or float in [0, 1] (V = cfg.num_views, T3Bench: 12). Kept per run
    by metrics.evaluate so that a judge failure never costs a second captioning pass.
    """
    frames = to_uint8_images(images)
    if frames.shape[0] != cfg.num_views:
        raise ValueError(f"alignment expects {cfg.num_views} views, got {frames.shape[0]}")
    captioner = _get(models, "captioner")
    if captioner is None:
        raise ValueError("caption_views needs models.captioner (load_alignment_models)")
    return {"captions": captioner.caption(frames, cfg.captioner), "captioner": captioner.describe(cfg.captioner),
            "num_views": int(frames.shape[0])}


def judge_captions(captioned: dict, prompt: str, cfg: AlignmentConfig, models: Any) -> dict:
    """The judge's half on the output of caption_views: the alignment record of one run (JSON-safe).

    Returns {score, rating, captions, merged_caption, rated_caption, missing_reason, replies, errors,
    attempts, judge, captioner, num_views, config}. Raises JudgeUnavailableError when the judge never replied.
    """
    judge = _get(models, "judge")
    if judge is None:
        judge = make_judge(cfg.judge)
    verdict = judge_alignment(judge, prompt, captioned["captions"], cfg.judge.max_retries, cfg.judge.merge_max_tokens,
                              cfg.judge.rating_max_tokens, JudgeTemplates.load(cfg.judge.templates))
    return {
        "score": rating_to_score(verdict["rating"]),
        "rating": verdict["rating"],
        "captions": captioned["captions"],
        "merged_caption": verdict["merged_caption"],
        "rated_caption": verdict["rated_caption"],
        "missing_reason": verdict["missing_reason"],
        "replies": verdict["replies"],
        "errors": verdict["errors"],
        "attempts": verdict["attempts"],
        "judge": {**verdict["judge"], "max_retries": cfg.judge.max_retries},
        "captioner": captioned["captioner"],
        "num_views": captioned["num_views"],
        "config": asdict(cfg),
    }


def score_alignment(images: Any, prompt: str, cfg: AlignmentConfig, models: Any) -> dict:
    """Caption the views, merge, rate: caption_views then judge_captions (see those)."""
    return judge_captions(caption_views(images, cfg, models), prompt, cfg, models)
