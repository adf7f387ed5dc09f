"""The report's tables, from the per-run rows (harness.report_collect) and the published rows.

T3Bench aggregation (docs/t3bench.md section 1): per category Quality = mean q over scored
prompts, Alignment = (mean rating - 1) / 4 * 100 over rated prompts, Avg_cat = (Q + A) / 2, and
All = mean of Avg_single, Avg_surr, Avg_multi. Every cell carries its count "(n=k/N)": k runs
with a number out of N expected, so a partial table can never pass for a full one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from metrics.alignment import category_alignment
from harness.report_collect import TOYBENCH_CONTROLS, control_slug
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


# What a published or computed T3Bench number is: quality alone, alignment alone, or their mean
# ((Q + A) / 2, T3Bench's leaderboard). A comparison only ever sets numbers of one metric side by side.
METRICS = ("quality", "alignment", "mean")
METRIC_TITLES = {"quality": "Quality only (ImageReward, 20 s + 50)",
                 "alignment": "Alignment only ((mean rating - 1) / 4 x 100)",
                 "mean": "(Quality + Alignment) / 2"}


@dataclass
class MethodRow:
    label: str
    method: str
    models: str
    quality: dict = field(default_factory=dict)  # category -> Cell
    alignment: dict = field(default_factory=dict)
    avg: dict = field(default_factory=dict)  # the mean metric, over the runs that have both numbers
    all: Optional[Cell] = None  # All of the mean metric
    clip: Optional[Cell] = None
    all_by: dict = field(default_factory=dict)  # metric -> All Cell (mean of the three categories)

    def cells(self, metric: str) -> dict:
        return {"quality": self.quality, "alignment": self.alignment, "mean": self.avg}[metric]


def _mean(values: list) -> Optional[float]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def categories_of(rows: list[dict]) -> list[str]:
    """T3Bench categories first in the paper's order, then any others in order of appearance."""
    seen = list(dict.fromkeys(r["category"] for r in rows))
    return [c for c in T3BENCH_CATEGORIES if c in seen] + [c for c in seen if c not in T3BENCH_CATEGORIES]


def by_label(rows: list[dict]) -> list[tuple[str, str, str, list[dict]]]:
    """(label, method, its model sets joined, its rows) for each label, in plan order."""
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        out.append((label, mine[0]["method"], ", ".join(sorted({str(r["models"]) for r in mine})), mine))
    return out


def method_rows(rows: list[dict]) -> list[MethodRow]:
    """One MethodRow per label (plan order), with every cell and its count."""
    cats = categories_of(rows)
    out = []
    for label, method, models, mine in by_label(rows):
        mr = MethodRow(label, method, models)
        for cat in cats:
            cell_rows = [r for r in mine if r["category"] == cat]
            if not cell_rows:
                continue
            expected = len(cell_rows)
            qs = [r.get("quality") for r in cell_rows if r.get("quality") is not None]
            a_value, a_n = category_alignment(r.get("alignment_rating") for r in cell_rows)
            mr.quality[cat] = Cell(_mean(qs), len(qs), expected)
            mr.alignment[cat] = Cell(a_value, a_n, expected)
            # the mean metric over exactly the runs that have both numbers: its n counts the runs in it
            both = [r for r in cell_rows if r.get("quality") is not None and r.get("alignment_rating") is not None]
            b_quality = _mean([r["quality"] for r in both])
            b_align, _ = category_alignment(r["alignment_rating"] for r in both)
            avg = (b_quality + b_align) / 2 if both else None
            mr.avg[cat] = Cell(avg, len(both), expected)
        for metric in METRICS:
            cells = mr.cells(metric)
            t3 = [c for c in T3BENCH_CATEGORIES if c in cells]
            if t3:
                vals = [cells[c].value for c in t3]
                value = sum(vals) / 3 if len(t3) == 3 and all(v is not None for v in vals) else None
                mr.all_by[metric] = Cell(value, sum(cells[c].n for c in t3), sum(cells[c].expected for c in t3))
        mr.all = mr.all_by.get("mean")
        clips = [r.get("clip") for r in mine if r.get("clip") is not None]
        mr.clip = Cell(_mean(clips), len(clips), len(mine))
        out.append(mr)
    return out


def scorer_of(row: dict) -> tuple:
    """What scored a run's T3Bench numbers: (source, judge, captioner). Runs of different scorers
    are never pooled in one cell (the judge and captioner define the alignment number)."""
    return (row.get("source") or "gaussians", row.get("judge"), row.get("captioner"))


def scorer_groups(rows: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """The rows split by scorer, first-seen order. Rows without an alignment record (judge and
    captioner unknown) join the one scored group of their source when there is exactly one."""
    keyed: dict = {}
    for r in rows:
        keyed.setdefault(scorer_of(r), []).append(r)
    for key in [k for k in keyed if k[1] is None and k[2] is None]:
        scored = [k for k in keyed if k[0] == key[0] and (k[1] is not None or k[2] is not None)]
        if len(scored) == 1:
            keyed[scored[0]] += keyed.pop(key)
    return list(keyed.items())


def scorer_title(key: tuple) -> str:
    source, judge, captioner = key
    seen = "rendered from exported meshes (T3Bench's mesh renderer)" if source == "mesh" else "Gaussians rendered directly"
    if judge is None and captioner is None:
        return f"{seen}; no alignment scored"
    return f"{seen}; judge `{judge or 'none'}`, captioner `{captioner or 'none'}`"


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


def reference_rows(references: list[dict], table: str, metric: str) -> list[tuple[dict, dict]]:
    """(reference file, row) of every published row of `table` that is on `metric`."""
    return [(ref, r) for ref in references if ref["table"] == table for r in ref["rows"]
            if r.get("metric", ref.get("metric")) == metric]


def t3bench_table(mrows: list[MethodRow], references: list[dict], metric: str = "mean") -> tuple[list[str], list[list[str]]]:
    """AnchorDS Table 1 layout, method | All | Single | Surr | Multi (+ extra categories), on one
    metric: published rows of that metric beside our cells of that metric, nothing else."""
    extra = sorted({c for m in mrows for c in m.cells(metric) if c not in T3BENCH_CATEGORIES})
    header = ["Method", "Source", "All", *(CATEGORY_TITLES[c] for c in T3BENCH_CATEGORIES), *extra]
    body = []
    for ref, r in reference_rows(references, "t3bench", metric):
        body.append([r["label"] + (" †" if r.get("note") else ""), f"published: {ref['short']}",
                     _fmt(r.get("all")), *(_fmt(r.get(c)) for c in T3BENCH_CATEGORIES), *("" for _ in extra)])
    for m in mrows:
        cells, all_cell = m.cells(metric), m.all_by.get(metric)
        body.append([f"**{m.label}**", f"ours ({m.models})", all_cell.text() if all_cell else "—",
                     *(cells[c].text() if c in cells else "—" for c in T3BENCH_CATEGORIES),
                     *(cells[c].text() if c in cells else "—" for c in extra)])
    return header, body


def t3bench_tables(rows: list[dict], by_table: dict, title: str) -> list[tuple[int, str, str, tuple]]:
    """(heading level, heading, explanation, table) of the T3Bench tables of one scorer's runs
    (source, judge, captioner), each comparison on one metric: the one list the Markdown report
    and the browser both render."""
    mrows = method_rows(rows)
    refs = by_table["t3bench"]
    ablation = by_table["ablation"][0] if by_table["ablation"] else None
    return [
        (2, f"T3Bench quality only, AnchorDS Table 1 layout ({title})",
         "The AnchorDS paper's Table 1 and ablation are T3Bench's quality metric alone, not (Quality + "
         "Alignment) / 2 (the evidence is in results/reference/anchords-table1.yaml); our cells here are quality "
         "too: mean q per category, All = mean of the three categories.",
         t3bench_table(mrows, refs, "quality")),
        (2, f"T3Bench (Quality + Alignment) / 2, T3Bench leaderboard layout ({title})",
         "Each cell averages the runs that have both numbers (n counts exactly those runs); All is the mean of "
         "the three categories.",
         t3bench_table(mrows, refs, "mean")),
        (3, f"Alignment only ((mean rating - 1) / 4 x 100; {title})", "", t3bench_table(mrows, refs, "alignment")),
        (2, f"Ablation (T3Bench All on the published table's metric: {ablation['metric'] if ablation else '—'}; "
         f"gain over SDS; {title})", "", ablation_table(mrows, ablation)),
    ]


def ablation_table(mrows: list[MethodRow], reference: Optional[dict]) -> tuple[list[str], list[list[str]]]:
    """Published ablation rows beside ours: All and the gain over the SDS baseline, ours on the
    reference's metric (the AnchorDS ablation: quality)."""
    header = ["Configuration", "Source", "All", "Gain over SDS"]
    body = []
    if reference is None:
        return header, body
    metric = reference["metric"]
    baseline = reference.get("baseline", "sds")
    for r in reference["rows"]:
        body.append([r["label"], f"published: {reference['short']}", _fmt(r.get("all")),
                     "—" if r.get("gain") is None else f"{r['gain']:+.1f}"])
    by_method = {}
    for m in mrows:
        by_method.setdefault(m.method, m)
    base = by_method.get(baseline)
    base_cell = base.all_by.get(metric) if base is not None else None
    base_all = base_cell.value if base_cell is not None else None
    for r in reference["rows"]:
        m = by_method.get(r.get("method"))
        if m is None:
            body.append([f"**{r['label']}**", "ours", "not in this job", "—"])
            continue
        cell = m.all_by.get(metric)
        value = cell.value if cell is not None else None
        gain = "—" if m.method == baseline else (
            f"{value - base_all:+.1f}" if value is not None and base_all is not None else "—")
        body.append([f"**{r['label']}** ({m.label})", f"ours ({m.models})", cell.text() if cell else "—", gain])
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


# ----------------------------------------------------------------------------------------------
# ToyBench (metrics/toybench.py): runs of the `toy` set on the toybench prompt suites


TOYBENCH_ALL = "all"
TOYBENCH_GROUND_TRUTH = "ground truth (ToyWorld renderer)"
# (metric, header, scale, digits): fractions shown in %, the colour-area error as it is
TOYBENCH_COLUMNS = (("alignment", "alignment %", 100.0, 1), ("consistency", "consistency %", 100.0, 1),
                    ("janus", "Janus rate %", 100.0, 1), ("quality", "quality (colour-area error, lower better)", 1.0, 3))
TOYBENCH_METRICS = ("alignment", "consistency", "janus", "quality", "colour_set", "shape_set", "count")


@dataclass
class ToyCell:
    values: dict  # metric -> mean over the scored runs (None when no run has it)
    n: int  # scored runs (ground truth: scored prompts)
    expected: int  # planned runs (ground truth: planned prompts)

    @property
    def partial(self) -> bool:
        return self.n < self.expected


@dataclass
class ToyRow:
    label: str
    method: str
    models: str
    cells: dict = field(default_factory=dict)  # category slug or "all" -> ToyCell
    ground_truth: bool = False  # a reference row (the ToyWorld sample or a control), not a method
    control: bool = False


def is_toybench_row(row: dict) -> bool:
    """A run of the ToyBench protocol (by its prompt category / model set), or one that has its score."""
    return row.get("benchmark") == "toybench" or row.get("toybench") is not None


def is_t3bench_row(row: dict) -> bool:
    """A run planned for T3Bench, or one that has a T3Bench score anyway."""
    return (row.get("benchmark", "t3bench") != "toybench"
            or any(row.get(s) is not None for s in ("quality", "alignment", "clip")))


def toybench_categories(rows: list[dict]) -> list[str]:
    """ToyBench categories in suite order (one object, two objects), then any others in order of appearance."""
    from harness.report_collect import toybench_category_slugs

    seen = list(dict.fromkeys(r["category"] for r in rows))
    known = list(toybench_category_slugs())
    return [c for c in known if c in seen] + [c for c in seen if c not in known]


def toybench_category_title(category: str) -> str:
    return "all" if category == TOYBENCH_ALL else category.replace("-", " ").replace("_", " ")


def _toy_cell(run_rows: list[dict]) -> ToyCell:
    scored = [r for r in run_rows if r.get("toybench") is not None]
    return ToyCell({k: _mean([r.get(f"toybench_{k}") for r in scored]) for k in TOYBENCH_METRICS},
                   len(scored), len(run_rows))


def _truth_cell(run_rows: list[dict], prefix: str = "toybench_ref_") -> ToyCell:
    """Reference numbers (columns `prefix`<metric>) once per prompt: they depend on the caption and
    cameras, not the method or seed."""
    prompts: dict = {}
    for r in run_rows:
        prompts.setdefault((r["category"], r["prompt"]), []).append(r)
    per_prompt = []
    for group in prompts.values():
        refs = [r for r in group if r.get("toybench") is not None and r.get(f"{prefix}alignment") is not None]
        if refs:
            per_prompt.append({k: _mean([r.get(f"{prefix}{k}") for r in refs]) for k in TOYBENCH_METRICS})
    return ToyCell({k: _mean([p[k] for p in per_prompt]) for k in TOYBENCH_METRICS}, len(per_prompt), len(prompts))


def toybench_rows(rows: list[dict]) -> list[ToyRow]:
    """One ToyRow per label (plan order) over the ToyBench runs, then the ground-truth row.

    A cell is the mean over its scored runs (every prompt and seed); "all" pools every run of the
    label. The ground-truth row averages each prompt's reference numbers once.
    """
    tb = [r for r in rows if is_toybench_row(r)]
    if not tb:
        return []
    cats = toybench_categories(tb)
    out = []
    for label, method, models, mine in by_label(tb):
        tr = ToyRow(label, method, models)
        for cat in cats:
            cell_rows = [r for r in mine if r["category"] == cat]
            if cell_rows:
                tr.cells[cat] = _toy_cell(cell_rows)
        tr.cells[TOYBENCH_ALL] = _toy_cell(mine)
        out.append(tr)
    truth = ToyRow(TOYBENCH_GROUND_TRUTH, "ground-truth", "", ground_truth=True)
    for cat in cats:
        truth.cells[cat] = _truth_cell([r for r in tb if r["category"] == cat])
    truth.cells[TOYBENCH_ALL] = _truth_cell(tb)
    out.append(truth)
    for control in TOYBENCH_CONTROLS:  # metric version 2 records carry them; older ones do not
        prefix = f"toybench_ctl_{control_slug(control)}_"
        if not any(r.get(f"{prefix}alignment") is not None for r in tb):
            continue
        row = ToyRow(f"control: {control}", "control", "", ground_truth=True, control=True)
        for cat in cats:
            row.cells[cat] = _truth_cell([r for r in tb if r["category"] == cat], prefix)
        row.cells[TOYBENCH_ALL] = _truth_cell(tb, prefix)
        out.append(row)
    return out


def toybench_partial(trows: list[ToyRow]) -> bool:
    return any(c.partial for t in trows if not t.ground_truth for c in t.cells.values())


def _toy_value(cell: Optional[ToyCell], metric: str, scale: float, digits: int) -> str:
    if cell is None:
        return "—"
    v = cell.values.get(metric)
    return _fmt(None if v is None else v * scale, digits)


def toybench_table(trows: list[ToyRow]) -> tuple[list[str], list[list[str]]]:
    """Method | Source | per category and "all": alignment %, consistency %, Janus %, quality (colour-area error), n."""
    groups = list(dict.fromkeys(c for t in trows for c in t.cells if c != TOYBENCH_ALL)) + [TOYBENCH_ALL]
    header = ["Method", "Source"]
    for g in groups:
        title = toybench_category_title(g)
        header += [f"{title}: {h}" for _, h, _, _ in TOYBENCH_COLUMNS] + [f"{title}: n"]
    body = []
    for t in trows:
        line = [t.label if t.ground_truth else f"**{t.label}**",
                "control (same cameras)" if t.control else
                "reference (same cameras)" if t.ground_truth else f"ours ({t.models})"]
        for g in groups:
            cell = t.cells.get(g)
            line += [_toy_value(cell, m, scale, d) for m, _, scale, d in TOYBENCH_COLUMNS]
            line.append("—" if cell is None else f"{cell.n}/{cell.expected}")
        body.append(line)
    return header, body


def toybench_frame_rows(trows: list[ToyRow]) -> list[dict]:
    """The ToyBench table in long form for toybench.parquet: one row per (row, category), fractions 0..1."""
    out = []
    for t in trows:
        for cat, cell in t.cells.items():
            out.append({"label": t.label, "method": t.method, "models": t.models,
                        "source": "control" if t.control else "ground truth" if t.ground_truth else "ours",
                        "category": cat,
                        **{k: cell.values.get(k) for k in TOYBENCH_METRICS}, "n": cell.n, "expected": cell.expected})
    return out
