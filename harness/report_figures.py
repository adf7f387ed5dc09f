"""Pictures next to the report: a per-category bar chart and per-prompt grids of every method's views.

The bar chart needs matplotlib (optional: without it the report says so and has no chart).
Grids put each method's `views.png` side by side, scaled to one height, titled with the label;
a method without a picture for that prompt gets a grey placeholder saying why.
"""

from __future__ import annotations

import hashlib
import io
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
