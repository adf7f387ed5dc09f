"""What the browser's pages show, gathered from the report rows and the run folders.

A row (harness.report_collect) carries the numbers; the run folder adds what a page shows beside
them: metrics.json's per-view details (ImageReward per icosphere point, captions, judge replies,
ToyBench judged sets) and train_log.parquet's loss curve. Nothing here writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.report_collect import METRICS_FILE


@dataclass(frozen=True)
class Metric:
    """A per-run number the browser ranks prompts by."""

    key: str  # the row column (or a derived key, see run_metric)
    title: str
    higher_is_better: bool
    scale: float = 1.0  # shown value = value * scale
    digits: int = 1


# Per-run numbers, in the order the pages list them; a metric no row has is left out.
METRICS = (
    Metric("t3bench", "T3Bench (Q+A)/2", True),
    Metric("quality", "Quality (ImageReward)", True),
    Metric("alignment", "Alignment", True),
    Metric("clip", "CLIP", True, 1.0, 3),
    Metric("toybench_alignment", "ToyBench alignment %", True, 100.0),
    Metric("toybench_consistency", "ToyBench consistency %", True, 100.0),
    Metric("toybench_janus", "ToyBench Janus", False, 1.0, 2),
    Metric("toybench_quality", "ToyBench colour-area error", False, 1.0, 3),
)


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return None if math.isnan(float(v)) else float(v)


def run_metric(row: dict, key: str) -> Optional[float]:
    """A run's value of a METRICS key: the row's column; 't3bench' = (quality + alignment) / 2."""
    if key == "t3bench":
        q, a = _num(row.get("quality")), _num(row.get("alignment"))
        return (q + a) / 2 if q is not None and a is not None else None
    return _num(row.get(key))


def metrics_present(rows: list[dict]) -> list[Metric]:
    return [m for m in METRICS if any(run_metric(r, m.key) is not None for r in rows)]


def fmt(metric: Metric, value: Optional[float]) -> str:
    return "—" if value is None else f"{value * metric.scale:.{metric.digits}f}"


def page_stem(category: str, index: Any, prompt: str) -> str:
    """The file stem of a prompt's page, as the picture grids name theirs."""
    if isinstance(index, int) and not isinstance(index, bool):
        return f"{category}-{index:03d}"
    return f"{category}-{hashlib.sha1(prompt.encode()).hexdigest()[:8]}"


def run_key(row: dict) -> str:
    """A file-safe id of one run, unique within a report."""
    digest = hashlib.sha1(str(row.get("run_dir")).encode()).hexdigest()[:10]
    return f"{row['label']}-{page_stem(row['category'], row.get('prompt_index'), row['prompt'])}-s{row['seed']}-{digest}".replace("/", "_")


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def icosphere_points(view_scores: list) -> Optional[dict]:
    """Per-view ImageReward on the quality icosphere: {points: [[azimuth deg, elevation deg,
    best-field-of-view score]], best: index of the highest}, or None when the record has none.

    The points are metrics.icosphere's vertices in the order quality_cameras scored them; the
    subdivision is the one whose vertex count matches (12, 42, 162, ...)."""
    if not isinstance(view_scores, list) or not view_scores:
        return None
    from metrics.icosphere import icosphere

    n = len(view_scores)
    sub = next((s for s in range(6) if 10 * 4 ** s + 2 == n), None)
    if sub is None:
        return None
    verts = icosphere(sub).vertices.tolist()
    points = []
    for (x, y, z), scores in zip(verts, view_scores):
        vals = [v for v in (scores if isinstance(scores, list) else [scores]) if _num(v) is not None]
        if not vals:
            continue
        r = math.sqrt(x * x + y * y + z * z) or 1.0
        points.append([math.degrees(math.atan2(y, x)), math.degrees(math.asin(max(-1.0, min(1.0, z / r)))), max(vals)])
    if not points:
        return None
    best = max(range(len(points)), key=lambda i: points[i][2])
    return {"points": points, "best": best}


def loss_curve(run_dir: Path, max_points: int) -> Optional[list[list[float]]]:
    """[[step, loss], ...] from train_log.parquet, evenly thinned to at most `max_points`."""
    path = run_dir / "train_log.parquet"
    if not path.is_file():
        return None
    try:
        import pandas as pd

        df = pd.read_parquet(path, columns=["step", "loss"])
    except Exception:  # a damaged log hides the curve, not the page
        return None
    df = df.dropna()
    if df.empty:
        return None
    stride = max(1, math.ceil(len(df) / max_points))
    return [[float(s), float(v)] for s, v in zip(df["step"].iloc[::stride], df["loss"].iloc[::stride])]


@dataclass
class RunView:
    """One method's result for one prompt and seed, as a prompt page shows it."""

    row: dict
    key: str
    numbers: list[tuple[str, str]] = field(default_factory=list)  # (title, shown value)
    details: dict = field(default_factory=dict)  # captions, merged caption, judge replies, toybench views
    icosphere: Optional[dict] = None
    loss: Optional[list[list[float]]] = None
    video: Optional[str] = None  # path relative to the report folder
    video_kind: str = ""  # "video" | "gif"
    splat: Optional[str] = None
    splat_note: str = ""
    judged_views: Optional[str] = None  # toybench_views.png, path relative to the report folder
    judged_views_large: Optional[str] = None  # toybench_views_large.png: the same cameras drawn larger
    background: tuple = (0, 0, 0)  # the run's views.background, 0..255: the viewer draws on it too

    @property
    def label(self) -> str:
        return self.row["label"]


def run_view(row: dict, metrics: list[Metric], max_loss_points: int) -> RunView:
    view = RunView(row, run_key(row))
    for m in metrics:
        view.numbers.append((m.title, fmt(m, run_metric(row, m.key))))
    for key, title in (("alignment_rating", "judge rating (1-5)"), ("num_gaussians", "Gaussians"),
                       ("seconds_per_step", "s / step"), ("wall_time_s", "wall time s")):
        v = _num(row.get(key))
        if v is not None:
            view.numbers.append((title, f"{v:,.0f}" if key in ("num_gaussians", "wall_time_s") else f"{v:.3g}"))
    run_dir = Path(row["run_dir"])
    rec = _read_json(run_dir / METRICS_FILE) or {}
    quality = rec.get("quality") if isinstance(rec.get("quality"), dict) else {}
    view.icosphere = icosphere_points(quality.get("view_scores"))
    align = rec.get("alignment") if isinstance(rec.get("alignment"), dict) else {}
    if align.get("captions"):
        view.details["captions"] = [str(c) for c in align["captions"]]
    if align.get("merged_caption"):
        view.details["merged_caption"] = str(align["merged_caption"])
    if align.get("replies"):
        view.details["replies"] = [r if isinstance(r, str) else json.dumps(r, indent=1, default=str)
                                   for r in align["replies"]]
    if row.get("toybench_view_sets"):
        try:
            view.details["toybench_view_sets"] = json.loads(row["toybench_view_sets"])
        except ValueError:
            pass
    if row.get("toybench_modal_set"):
        view.details["toybench_modal_set"] = str(row["toybench_modal_set"])
    view.loss = loss_curve(run_dir, max_loss_points)
    view.background = _background(run_dir)
    return view


def _background(run_dir: Path) -> tuple:
    """The run's views.background (config.yaml) as 0..255 RGB; black when it is not recorded."""
    import yaml

    from generators.untrusted import safe_load  # bounded: a run folder is data we did not write ourselves

    try:
        bg = (safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {})["views"]["background"]
        return tuple(max(0, min(255, round(float(c) * 255))) for c in bg[:3])
    except (OSError, KeyError, TypeError, ValueError, IndexError, yaml.YAMLError):
        return (0, 0, 0)


@dataclass
class PromptPage:
    """Every method's runs of one prompt (all seeds): one HTML page."""

    stem: str
    category: str
    index: Any
    prompt: str
    seeds: dict = field(default_factory=dict)  # seed -> [RunView] in label order

    @property
    def file(self) -> str:
        return f"prompts/{self.stem}.html"


def prompt_pages(rows: list[dict], metrics: list[Metric], max_loss_points: int) -> list[PromptPage]:
    """One page per (category, prompt), in plan order; each seed's runs in label order."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    pages: dict = {}
    for r in rows:
        stem = page_stem(r["category"], r.get("prompt_index"), r["prompt"])
        page = pages.setdefault(stem, PromptPage(stem, r["category"], r.get("prompt_index"), r["prompt"]))
        page.seeds.setdefault(r["seed"], []).append(run_view(r, metrics, max_loss_points))
    for page in pages.values():
        for seed, views in page.seeds.items():
            views.sort(key=lambda v: labels.index(v.label))
    return list(pages.values())


def ranking_data(pages: list[PromptPage], metrics: list[Metric]) -> dict:
    """JSON for ranked.html: per (prompt, seed) each label's value of each metric."""
    items = []
    for page in pages:
        for seed, views in page.seeds.items():
            items.append({"page": page.file, "category": page.category, "prompt": page.prompt, "seed": seed,
                          "values": {v.label: {m.key: run_metric(v.row, m.key) for m in metrics} for v in views}})
    labels = list(dict.fromkeys(v.label for p in pages for vs in p.seeds.values() for v in vs))
    return {"labels": labels, "items": items,
            "metrics": [{"key": m.key, "title": m.title, "higher": m.higher_is_better, "scale": m.scale,
                         "digits": m.digits} for m in metrics]}


def best_and_worst(pages: list[PromptPage], metric: Metric, k: int) -> list[dict]:
    """Per label: its k best and k worst (prompt, seed) by `metric` (direction-aware)."""
    per_label: dict = {}
    for page in pages:
        for seed, views in page.seeds.items():
            for v in views:
                value = run_metric(v.row, metric.key)
                if value is not None:
                    per_label.setdefault(v.label, []).append((value, page, seed))
    out = []
    for label, items in per_label.items():
        items.sort(key=lambda t: t[0], reverse=metric.higher_is_better)
        entry = lambda t: {"value": fmt(metric, t[0]), "page": t[1].file, "prompt": t[1].prompt,  # noqa: E731
                           "category": t[1].category, "seed": t[2]}
        out.append({"label": label, "best": [entry(t) for t in items[:k]],
                    "worst": [entry(t) for t in items[::-1][:k]], "n": len(items)})
    return out
