"""Small inline SVG pictures for the prompt pages (hundreds of them: no matplotlib per page).

    loss_svg({"sds": [[step, loss], ...], ...})      # one line per method
    icosphere_svg({"points": [[az, el, score]], "best": i})   # per-view ImageReward map
"""

from __future__ import annotations

import html
import math
from typing import Optional

# Tableau-10: the colours matplotlib's default cycle uses, so the index charts and the pages agree
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
# viridis at 5 stops, for scores from low (dark) to high (yellow)
VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def viridis(t: float) -> str:
    t = min(1.0, max(0.0, t)) * (len(VIRIDIS) - 1)
    i = min(int(t), len(VIRIDIS) - 2)
    f = t - i
    r, g, b = (round(a + (b - a) * f) for a, b in zip(VIRIDIS[i], VIRIDIS[i + 1]))
    return f"#{r:02x}{g:02x}{b:02x}"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= step * m)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def loss_svg(curves: dict, labels: list[str], width: int = 520, height: int = 220) -> Optional[str]:
    """One line per label (colour = the label's place in `labels`); None without any curve."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    pad_l, pad_r, pad_t, pad_b = 52, 10, 10, 28
    xs = [p[0] for c in curves.values() for p in c]
    ys = [p[1] for c in curves.values() for p in c]
    x0, x1 = min(xs), max(xs) or 1.0
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    px = lambda x: pad_l + (x - x0) / ((x1 - x0) or 1) * (width - pad_l - pad_r)  # noqa: E731
    py = lambda y: height - pad_b - (y - y0) / (y1 - y0) * (height - pad_t - pad_b)  # noqa: E731
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="loss curves">',
           f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_t - pad_b}" '
           f'fill="none" stroke="#ccc"/>']
    for t in _ticks(y0, y1):
        out.append(f'<text x="{pad_l - 4}" y="{py(t) + 4:.1f}" text-anchor="end" font-size="10">{t:.3g}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{px(t):.1f}" y="{height - pad_b + 14}" text-anchor="middle" font-size="10">{t:.0f}</text>')
    out.append(f'<text x="{(pad_l + width) / 2}" y="{height - 2}" text-anchor="middle" font-size="10">step</text>')
    for label, pts in curves.items():
        i = labels.index(label) if label in labels else 0
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{colour(i)}" stroke-width="1.4" points="{path}">'
                   f'<title>{html.escape(label)}</title></polyline>')
    out.append("</svg>")
    return "".join(out)


def icosphere_svg(data: Optional[dict], width: int = 360, height: int = 200) -> Optional[str]:
    """Per-view ImageReward over the icosphere, unrolled: azimuth across, elevation up; colour =
    score (viridis, low dark), the best view ringed. None without data."""
    if not data or not data.get("points"):
        return None
    pts = data["points"]
    scores = [p[2] for p in pts]
    lo, hi = min(scores), max(scores)
    pad_l, pad_b, pad_t = 30, 30, 8
    w, h = width - pad_l - 8, height - pad_b - pad_t
    px = lambda az: pad_l + (az + 180.0) / 360.0 * w  # noqa: E731
    py = lambda el: pad_t + (90.0 - el) / 180.0 * h  # noqa: E731
    out = [f'<svg class="chart icosphere" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="ImageReward per view on the icosphere">',
           f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#f4f4f4" stroke="#ccc"/>']
    for el in (-60, 0, 60):
        out.append(f'<text x="{pad_l - 3}" y="{py(el) + 3:.1f}" text-anchor="end" font-size="9">{el}°</text>')
    for az in (-180, -90, 0, 90, 180):
        out.append(f'<text x="{px(az):.1f}" y="{pad_t + h + 11}" text-anchor="middle" font-size="9">{az}°</text>')
    for i, (az, el, s) in enumerate(pts):
        fill = viridis((s - lo) / (hi - lo) if hi > lo else 0.5)
        ring = ' stroke="#d62728" stroke-width="2"' if i == data.get("best") else ""
        out.append(f'<circle cx="{px(az):.1f}" cy="{py(el):.1f}" r="{6 if ring else 4.5}" fill="{fill}"{ring}>'
                   f'<title>azimuth {az:.0f}°, elevation {el:.0f}°: {s:.3f}</title></circle>')
    out.append(f'<text x="{pad_l}" y="{height - 4}" font-size="9">azimuth → (elevation ↑); '
               f'ImageReward {lo:.2f} (dark) … {hi:.2f} (yellow); ringed: best view</text>')
    out.append("</svg>")
    return "".join(out)
