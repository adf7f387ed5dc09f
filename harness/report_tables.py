"""The report's tables, from the per-run rows (harness.report_collect) and the published rows.

T3Bench aggregation (t3bench-protocol.md section 4): per category Quality = mean q over scored
prompts, Alignment = (mean rating - 1) / 4 * 100 over rated prompts, Avg_cat = (Q + A) / 2, and
All = mean of Avg_single, Avg_surr, Avg_multi. Every cell carries its count "(n=k/N)": k runs
with a number out of N expected, so a partial table can never pass for a full one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from metrics.alignment import category_alignment
from prompts.suites import T3BENCH_CATEGORIES

CATEGORY_TITLES = {"single": "Single", "surr": "Surr", "multi": "Multi"}


@dataclass
class Cell:
    value: Optional[float]
    n: int  # runs that have the number
    expected: int  # runs the job plans for this cell

    @property
    def partial(self) -> bool:
        return self.n < self.expected

    def text(self, digits: int = 1) -> str:
        v = "—" if self.value is None else f"{self.value:.{digits}f}"
        return f"{v} (n={self.n}/{self.expected})"


@dataclass
class MethodRow:
    label: str
    method: str
    models: str
    quality: dict = field(default_factory=dict)  # category -> Cell
    alignment: dict = field(default_factory=dict)
    avg: dict = field(default_factory=dict)
    all: Optional[Cell] = None
    clip: Optional[Cell] = None


def _mean(values: list) -> Optional[float]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def categories_of(rows: list[dict]) -> list[str]:
    """T3Bench categories first in the paper's order, then any others in order of appearance."""
    seen = list(dict.fromkeys(r["category"] for r in rows))
    return [c for c in T3BENCH_CATEGORIES if c in seen] + [c for c in seen if c not in T3BENCH_CATEGORIES]


def method_rows(rows: list[dict]) -> list[MethodRow]:
    """One MethodRow per label (plan order), with every cell and its count."""
    cats = categories_of(rows)
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        mr = MethodRow(label, mine[0]["method"], ", ".join(sorted({str(r["models"]) for r in mine})))
        for cat in cats:
            cell_rows = [r for r in mine if r["category"] == cat]
            if not cell_rows:
                continue
            expected = len(cell_rows)
            qs = [r.get("quality") for r in cell_rows if r.get("quality") is not None]
            a_value, a_n = category_alignment(r.get("alignment_rating") for r in cell_rows)
            mr.quality[cat] = Cell(_mean(qs), len(qs), expected)
            mr.alignment[cat] = Cell(a_value, a_n, expected)
            q = mr.quality[cat]
            both = sum(1 for r in cell_rows if r.get("quality") is not None and r.get("alignment_rating") is not None)
            avg = (q.value + a_value) / 2 if q.value is not None and a_value is not None else None
            mr.avg[cat] = Cell(avg, both, expected)
        t3 = [c for c in T3BENCH_CATEGORIES if c in mr.avg]
        if t3:
            vals = [mr.avg[c].value for c in t3]
            value = sum(vals) / 3 if len(t3) == 3 and all(v is not None for v in vals) else None
            mr.all = Cell(value, sum(mr.avg[c].n for c in t3), sum(mr.avg[c].expected for c in t3))
        clips = [r.get("clip") for r in mine if r.get("clip") is not None]
        mr.clip = Cell(_mean(clips), len(clips), len(mine))
        out.append(mr)
    return out


def any_partial(mrows: list[MethodRow]) -> bool:
    cells = [c for m in mrows for d in (m.quality, m.alignment, m.avg) for c in d.values()]
    cells += [m.all for m in mrows if m.all is not None] + [m.clip for m in mrows if m.clip is not None]
    return any(c.partial for c in cells)


# ----------------------------------------------------------------------------------------------
# Markdown


def md_table(header: list[str], body: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _fmt(v: Optional[float], digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def t3bench_table(mrows: list[MethodRow], references: list[dict]) -> tuple[list[str], list[list[str]]]:
    """AnchorDS Table 1 layout: method | All | Single | Surr | Multi (+ extra categories)."""
    extra = sorted({c for m in mrows for c in m.avg if c not in T3BENCH_CATEGORIES})
    header = ["Method", "Source", "All", *(CATEGORY_TITLES[c] for c in T3BENCH_CATEGORIES), *extra]
    body = []
    for ref in references:
        if ref["table"] != "t3bench":
            continue
        for r in ref["rows"]:
            body.append([r["label"] + (" †" if r.get("note") else ""), f"published: {ref['short']}",
                         _fmt(r.get("all")), *(_fmt(r.get(c)) for c in T3BENCH_CATEGORIES), *("" for _ in extra)])
    for m in mrows:
        body.append([f"**{m.label}**", f"ours ({m.models})", m.all.text() if m.all else "—",
                     *(m.avg[c].text() if c in m.avg else "—" for c in T3BENCH_CATEGORIES),
                     *(m.avg[c].text() if c in m.avg else "—" for c in extra)])
    return header, body


def breakdown_table(mrows: list[MethodRow], which: str) -> tuple[list[str], list[list[str]]]:
    cats = list(dict.fromkeys(c for m in mrows for c in getattr(m, which)))
    header = ["Method", *(CATEGORY_TITLES.get(c, c) for c in cats)]
    body = [[f"**{m.label}**", *(getattr(m, which)[c].text() if c in getattr(m, which) else "—" for c in cats)]
            for m in mrows]
    return header, body


def ablation_table(mrows: list[MethodRow], reference: Optional[dict]) -> tuple[list[str], list[list[str]]]:
    """Published ablation rows beside ours: All and the gain over the SDS baseline."""
    header = ["Configuration", "Source", "All", "Gain over SDS"]
    body = []
    if reference is None:
        return header, body
    baseline = reference.get("baseline", "sds")
    for r in reference["rows"]:
        body.append([r["label"], f"published: {reference['short']}", _fmt(r.get("all")),
                     "—" if r.get("gain") is None else f"{r['gain']:+.1f}"])
    by_method = {}
    for m in mrows:
        by_method.setdefault(m.method, m)
    base = by_method.get(baseline)
    base_all = base.all.value if base is not None and base.all is not None else None
    for r in reference["rows"]:
        m = by_method.get(r.get("method"))
        if m is None:
            body.append([f"**{r['label']}**", "ours", "not in this job", "—"])
            continue
        value = m.all.value if m.all is not None else None
        gain = "—" if m.method == baseline else (
            f"{value - base_all:+.1f}" if value is not None and base_all is not None else "—")
        body.append([f"**{r['label']}** ({m.label})", f"ours ({m.models})", m.all.text() if m.all else "—", gain])
    return header, body


def clip_table(mrows: list[MethodRow], rows: list[dict], reference: Optional[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["Method", "Source", "Model set", "CLIP", "CLIP model"]
    body = []
    if reference is not None:
        for r in reference["rows"]:
            body.append([r["label"], f"published: {reference['short']}", r.get("models", ""), _fmt(r.get("clip"), 3),
                         reference.get("clip_model", "")])
    for m in mrows:
        models = sorted({f"{r.get('clip_model')}/{r.get('clip_pretrained')}" for r in rows
                         if r["label"] == m.label and r.get("clip") is not None})
        body.append([f"**{m.label}**", "ours", m.models, m.clip.text(3) if m.clip else "—", ", ".join(models) or "—"])
    return header, body
