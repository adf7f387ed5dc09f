"""Pictures next to the report: a per-category bar chart and per-prompt grids of every method's views.

The bar chart needs matplotlib (optional: without it the report says so and has no chart).
Grids put each method's `views.png` side by side, scaled to one height, titled with the label;
a method without a picture for that prompt gets a grey placeholder saying why.
ToyBench grids (toybench-<category>-<index>-seed<seed>.png) stack each method's judged views
(`toybench_views.png`) one row per method, with its ToyBench numbers beside it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from generators.io import atomic_write_bytes
from harness.report_tables import CATEGORY_TITLES, MethodRow

GRID_HEIGHT = 256  # px of each method's panel in a prompt grid
TITLE_HEIGHT = 18  # px of the label strip above each panel
PLACEHOLDER_GREY = 96


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def bar_chart(mrows: list[MethodRow], path: Path) -> Optional[str]:
    """Avg_cat per category and method; returns None when written, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -c constraints.txt matplotlib)"
    cats = list(dict.fromkeys(c for m in mrows for c in m.avg))
    if not cats or not mrows:
        return "no scored runs"
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(cats), 3.6), dpi=120)
    width = 0.8 / len(mrows)
    for i, m in enumerate(mrows):
        xs = np.arange(len(cats)) + (i - (len(mrows) - 1) / 2) * width
        vals = [m.avg[c].value if c in m.avg and m.avg[c].value is not None else 0.0 for c in cats]
        bars = ax.bar(xs, vals, width, label=m.label)
        for x, c, bar in zip(xs, cats, bars):
            cell = m.avg.get(c)
            if cell is not None:
                ax.annotate(f"{cell.n}/{cell.expected}", (x, bar.get_height()), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(np.arange(len(cats)), [CATEGORY_TITLES.get(c, c) for c in cats])
    ax.set_ylabel("T3Bench (Quality + Alignment) / 2")
    ax.set_title("Ours, per category (n = scored / expected on each bar)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return None


def _panel(label: str, png: Optional[str], why: str, width: int) -> Image.Image:
    panel = Image.new("RGB", (width, GRID_HEIGHT + TITLE_HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    draw.text((4, 3), label[: width // 6], fill=(0, 0, 0))
    if png is not None:
        img = Image.open(png).convert("RGB")
        img = img.resize((max(1, round(img.width * GRID_HEIGHT / img.height)), GRID_HEIGHT))
        panel.paste(img.crop((0, 0, min(width, img.width), GRID_HEIGHT)), (0, TITLE_HEIGHT))
    else:
        panel.paste(Image.new("RGB", (width, GRID_HEIGHT), (PLACEHOLDER_GREY,) * 3), (0, TITLE_HEIGHT))
        draw.text((4, TITLE_HEIGHT + GRID_HEIGHT // 2), why[: width // 6], fill=(255, 255, 255))
    return panel


def prompt_grids(rows: list[dict], labels: list[str], out_dir: Path) -> list[dict]:
    """One PNG per (category, prompt, seed): every label's views side by side. Returns their records."""
    keys = list(dict.fromkeys((r["category"], r["prompt_index"], r["prompt"], r["seed"]) for r in rows))
    written = []
    for cat, index, prompt, seed in keys:
        cell = {r["label"]: r for r in rows if (r["category"], r["prompt_index"], r["prompt"], r["seed"]) == (cat, index, prompt, seed)}
        if not any(r.get("views_png") for r in cell.values()):
            continue
        widths = []
        for label in labels:
            png = (cell.get(label) or {}).get("views_png")
            if png:
                with Image.open(png) as im:
                    widths.append(round(im.width * GRID_HEIGHT / im.height))
        width = max(widths) if widths else GRID_HEIGHT
        panels = []
        for label in labels:
            r = cell.get(label)
            why = "not planned" if r is None else (r.get("reason") or r.get("status") or "")
            panels.append(_panel(label, (r or {}).get("views_png"), why, width))
        grid = Image.new("RGB", (width * len(panels), GRID_HEIGHT + TITLE_HEIGHT), (255, 255, 255))
        for i, p in enumerate(panels):
            grid.paste(p, (i * width, 0))
        stem = f"{cat}-{index:03d}" if isinstance(index, int) else f"{cat}-{hashlib.sha1(prompt.encode()).hexdigest()[:8]}"
        name = f"{stem}-seed{seed}.png"
        atomic_write_bytes(out_dir / name, _png_bytes(grid))
        written.append({"category": cat, "prompt_index": index, "prompt": prompt, "seed": seed, "file": name})
    return written


TOY_ROW_HEIGHT = 128  # least px of each method's ToyBench views (the 32 px views, scaled up without smoothing)
TOY_LABEL_WIDTH = 210  # px of the label column left of each row
TOY_TITLE_HEIGHT = 16  # px of the prompt line above the rows
GROUND_TRUTH_LABEL = "ground truth"


def _toy_label(r: Optional[dict]) -> list[str]:
    if r is None:
        return ["not planned"]
    if r.get("toybench") is None:
        return [str(r.get("toybench_reason") or r.get("reason") or r.get("status") or "not scored")]
    # ASCII only: PIL's default font draws anything else as a box (a dash came out as one)
    pct = lambda k: "n/a" if r.get(f"toybench_{k}") is None else f"{r[f'toybench_{k}'] * 100:.0f}%"  # noqa: E731
    janus = ("n/a (never shows the caption)" if r.get("toybench_janus") is None
             else "yes" if r["toybench_janus"] >= 0.5 else "no")
    return [f"align {pct('alignment')} cons {pct('consistency')}", f"janus {janus}",
            f"modal: {r.get('toybench_modal_set') or 'none'}"]


@functools.lru_cache(maxsize=64)  # a caption's truth is the same for each seed of a report's grids
def ground_truth_views_png(prompt: str, settings_json: Optional[str],
                           size: Optional[int] = None) -> tuple[Optional[Image.Image], str]:
    """The ToyWorld sample of the caption the reference numbers were scored on, from the run's
    ToyBench cameras (at `size` px instead of the scored size when given), laid out like
    toybench_views.png; (None, why) when it cannot be drawn."""
    if not settings_json:
        return None, "no toybench settings recorded"
    try:
        import dataclasses

        import torch

        from generators.outputs import image_grid
        from metrics.config import ToyBenchConfig
        from metrics.toybench import ground_truth_views, toybench_cameras

        settings = json.loads(settings_json)
        known = {f.name for f in dataclasses.fields(ToyBenchConfig)}
        cfg = ToyBenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in known})
        if size:
            cfg = dataclasses.replace(cfg, size=size)
        views = ground_truth_views(prompt, toybench_cameras(cfg), seed=cfg.reference_seed)  # the scored sample
        frames = (views.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return Image.fromarray(image_grid(frames, cfg.num_azimuths)), ""
    except Exception as e:  # a picture, not a number: the report goes on without it
        return None, f"not drawn: {type(e).__name__}: {e}"


def _elevations(settings_json: Optional[str]) -> int:
    """Rows of a views PNG: the recorded ToyBench settings' elevations (the default's 2 if unreadable)."""
    try:
        return max(1, len(json.loads(settings_json)["elevations_deg"]))
    except (TypeError, ValueError, KeyError):
        return 2


def toybench_grids(rows: list[dict], labels: list[str], out_dir: Path, ground_truth: bool = True) -> list[dict]:
    """One PNG per (category, prompt, seed) of the ToyBench runs: a row per label with its judged
    views (toybench_views.png: both elevations, 8 azimuths each), the label, alignment,
    consistency, Janus and the most common judged set beside it; with `ground_truth`, a last row
    of the ToyWorld renderer's picture of the caption from the same cameras. Returns their records."""
    keys = list(dict.fromkeys((r["category"], r["prompt_index"], r["prompt"], r["seed"]) for r in rows))
    written = []
    for cat, index, prompt, seed in keys:
        cell = {r["label"]: r for r in rows if (r["category"], r["prompt_index"], r["prompt"], r["seed"]) == (cat, index, prompt, seed)}
        if not any(r.get("toybench_views_png") for r in cell.values()):
            continue
        images = {}
        for label in labels:  # the views drawn larger for people where the run has them, else the judged ones
            row = cell.get(label) or {}
            png = row.get("toybench_views_large_png") or row.get("toybench_views_png")
            if png:
                images[label] = Image.open(png).convert("RGB")
        settings = next((r.get("toybench_settings") for r in cell.values() if r.get("toybench_settings")), None)
        view_px = max((im.height for im in images.values()), default=0) // _elevations(settings) or None
        names = list(labels)
        texts = {label: _toy_label(cell.get(label)) for label in labels}
        if ground_truth:
            truth, why = ground_truth_views_png(prompt, settings, view_px)
            truth = truth.copy() if truth is not None else None  # the cached picture stays unchanged
            ref = next((r for r in cell.values() if r.get("toybench_ref_alignment") is not None), None)
            names.append(GROUND_TRUTH_LABEL)
            if truth is None:
                texts[GROUND_TRUTH_LABEL] = [why]
            elif ref is None:
                texts[GROUND_TRUTH_LABEL] = ["(its numbers: not scored)"]
            else:
                ref_numbers = {k.replace("_ref_", "_"): v for k, v in ref.items() if k.startswith("toybench_ref_")}
                texts[GROUND_TRUTH_LABEL] = _toy_label({"toybench": 1.0, **ref_numbers})
            if truth is not None:
                images[GROUND_TRUTH_LABEL] = truth
        for label, img in images.items():
            scale = max(1, round(TOY_ROW_HEIGHT / img.height))
            images[label] = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        row_h = max([TOY_ROW_HEIGHT, *(im.height for im in images.values())])
        width = max([TOY_ROW_HEIGHT * 4, *(im.width for im in images.values())])
        grid = Image.new("RGB", (TOY_LABEL_WIDTH + width, TOY_TITLE_HEIGHT + row_h * len(names)), (255, 255, 255))
        draw = ImageDraw.Draw(grid)
        draw.text((4, 2), f"{cat} #{index} seed {seed}: {prompt}"[: (TOY_LABEL_WIDTH + width) // 6], fill=(0, 0, 0))
        for i, label in enumerate(names):
            y = TOY_TITLE_HEIGHT + i * row_h
            draw.text((4, y + 4), label[: TOY_LABEL_WIDTH // 6], fill=(0, 0, 0))
            for j, line in enumerate(texts[label]):
                draw.text((4, y + 20 + 13 * j), line[: TOY_LABEL_WIDTH // 6], fill=(60, 60, 60))
            if label in images:
                grid.paste(images[label], (TOY_LABEL_WIDTH, y))
            else:
                grid.paste(Image.new("RGB", (width, row_h), (PLACEHOLDER_GREY,) * 3), (TOY_LABEL_WIDTH, y))
        stem = f"{cat}-{index:03d}" if isinstance(index, int) else f"{cat}-{hashlib.sha1(prompt.encode()).hexdigest()[:8]}"
        name = f"toybench-{stem}-seed{seed}.png"
        atomic_write_bytes(out_dir / name, _png_bytes(grid))
        written.append({"category": cat, "prompt_index": index, "prompt": prompt, "seed": seed, "file": name})
    return written


# ----------------------------------------------------------------------------------------------
# The browser's index charts (inline SVG: crisp, searchable text, no extra files)

# attribute pairs a table cell may carry for its interval (harness.report_tables / harness.stats);
# the first pair present wins, a cell without any is drawn without an error bar
INTERVAL_ATTRS = (("ci_low", "ci_high"), ("low", "high"), ("lo", "hi"))


def cell_interval(cell, metric: Optional[str] = None) -> Optional[tuple[float, float]]:
    """(low, high) of a table cell's interval, from whatever the cell carries, else None.

    A Cell may hold `ci_low`/`ci_high` (or `low`/`high`, `lo`/`hi`, or a pair in `ci` /
    `interval`); a ToyCell (metric given) the same keys in `intervals[metric]` or its `values`
    (`<metric>_ci_low`, `<metric>_ci_high`)."""
    if cell is None:
        return None
    sources = []
    if metric is not None:
        intervals = getattr(cell, "intervals", None) or getattr(cell, "ci", None)
        if isinstance(intervals, dict) and metric in intervals:
            sources.append(intervals[metric])
        values = getattr(cell, "values", None)
        if isinstance(values, dict):
            sources.append({k[len(metric) + 1:]: v for k, v in values.items() if k.startswith(f"{metric}_")})
    else:
        sources.append(cell)
    for src in sources:
        if isinstance(src, (tuple, list)) and len(src) == 2:
            pair = src
        else:
            get = src.get if isinstance(src, dict) else (lambda k, s=src: getattr(s, k, None))
            pair = next(((get(a), get(b)) for a, b in INTERVAL_ATTRS if get(a) is not None and get(b) is not None),
                        None)
            if pair is None:
                whole = get("ci") if not isinstance(src, dict) or metric is None else None
                whole = whole if whole is not None else get("interval")
                pair = whole if isinstance(whole, (tuple, list)) and len(whole) == 2 else None
        if pair is not None and all(isinstance(v, (int, float)) for v in pair):
            return float(pair[0]), float(pair[1])
    return None


def _svg_text(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def grouped_bars_svg(groups: list[str], series: list[dict], ylabel: str, title: str) -> Optional[str]:
    """Grouped bars as inline SVG. series: [{label, values: {group: v}, intervals: {group: (lo, hi)},
    published: bool, tag: optional, colour: optional}]; published rows (or references: `tag`)
    are grey, hatched and labelled so, ours in
    their colour (the pages' colour of the method). None without matplotlib or data."""
    plt = _pyplot()
    if plt is None or not groups or not series:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.3 * len(groups) * len(series)), 3.2), dpi=100)
    width = 0.8 / len(series)
    n_published = sum(1 for s in series if s.get("published"))
    greys = iter(np.linspace(0.35, 0.85, max(1, n_published)))
    for i, s in enumerate(series):
        xs = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
        vals = [s["values"].get(g) for g in groups]
        heights = [0.0 if v is None else v for v in vals]
        if s.get("published"):
            style = {"hatch": "//", "color": str(next(greys)), "edgecolor": "black", "linewidth": 0.4}
        else:
            style = {"color": s["colour"]} if s.get("colour") else {}
        name = f"{s['label']} ({s.get('tag', 'published')})" if s.get("published") else s["label"]
        ax.bar(xs, heights, width, label=name, **style)
        ivals = s.get("intervals") or {}
        err = [(x, v, ivals[g]) for x, v, g in zip(xs, vals, groups) if v is not None and g in ivals]
        if err:
            ax.errorbar([e[0] for e in err], [e[1] for e in err],
                        yerr=[[max(0.0, e[1] - e[2][0]) for e in err], [max(0.0, e[2][1] - e[1]) for e in err]],
                        fmt="none", ecolor="black", capsize=2, linewidth=0.8)
    ax.set_xticks(np.arange(len(groups)), [g.replace(" ", "\n") for g in groups], fontsize=8)
    values = [v for s in series for v in s["values"].values() if v is not None]
    if values and min(values) >= 0:
        ax.set_ylim(bottom=0, top=max(1e-6, max(values)) * 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=8, wrap=True)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _svg_text(fig)


def loss_curves_svg(curves: dict, labels: list[str]) -> Optional[str]:
    """One panel per label: each run's loss (thin) and the median over runs at each logged step
    (bold). curves: label -> [[[step, loss], ...] per run]. None without matplotlib or curves."""
    plt = _pyplot()
    present = [lb for lb in labels if curves.get(lb)]
    if plt is None or not present:
        return None
    cols = min(3, len(present))
    rows = -(-len(present) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.4 * rows), dpi=100, squeeze=False, sharey=True)
    for ax in axes.flat[len(present):]:
        ax.axis("off")
    for i, (ax, label) in enumerate(zip(axes.flat, present)):
        colour = f"C{labels.index(label) % 10}"
        by_step: dict = {}
        for run in curves[label]:
            ax.plot([p[0] for p in run], [p[1] for p in run], color=colour, alpha=0.25, linewidth=0.6)
            for s, v in run:
                by_step.setdefault(s, []).append(v)
        steps = sorted(by_step)
        ax.plot(steps, [float(np.median(by_step[s])) for s in steps], color=colour, linewidth=1.6)
        ax.set_title(f"{label} ({len(curves[label])} runs)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
    fig.tight_layout()
    return _svg_text(fig)
