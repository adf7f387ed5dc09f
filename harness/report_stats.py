"""The report's uncertainty sections (harness.stats over the per-run rows), for T3Bench and ToyBench.

    lines = uncertainty_section(rows, metrics, baseline="sds", title="...")   # markdown lines
    lines = comparison_sentences(rows, metrics, baseline="sds")               # one per category x method

A metric here is a `StatMetric`: how to read one run's number from its row, which way is better,
and how to print it. Cells: mean over prompts (each prompt's seeds averaged first) with a 95%
bootstrap interval. Comparisons: each method minus the baseline, paired by prompt, with the
Bonferroni-adjusted interval over the methods compared in that category (harness.stats).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from harness import stats
from harness.report_tables import by_label, md_table

DEFAULT_BASELINE = "sds"


@dataclass(frozen=True)
class StatMetric:
    name: str  # as printed
    value: Callable[[dict], Optional[float]]  # one run's number from its row
    lower_is_better: bool
    scale: float = 1.0  # printed value = value * scale
    digits: int = 3


def column(key: str) -> Callable[[dict], Optional[float]]:
    return lambda r: r.get(key)


def _cells(rows: list[dict], categories: list[str]) -> list[tuple[str, str, list[dict]]]:
    """(category, label, that label's runs in it) in category then plan order."""
    out = []
    for cat in categories:
        for label, _, _, mine in by_label([r for r in rows if r["category"] == cat]):
            out.append((cat, label, mine))
    return out


def find_baseline(rows: list[dict], baseline: str) -> Optional[str]:
    """The label that is the baseline: a label equal to `baseline`, else the first run of that method."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    if baseline in labels:
        return baseline
    return next((r["label"] for r in rows if r["method"] == baseline), None)


def _seeds(rows: list[dict]) -> int:
    return len({r.get("seed") for r in rows})


def interval_table(rows: list[dict], categories: list[str], metrics: list[StatMetric],
                   title_of: Callable[[str], str]) -> str:
    """Category | Method | prompts x seeds | per metric: mean [95% interval]."""
    header = ["Category", "Method", "prompts x seeds scored", *(m.name for m in metrics)]
    body = []
    for cat, label, mine in _cells(rows, categories):
        cells = []
        for m in metrics:
            iv = stats.mean_interval(list(stats.per_prompt(mine, m.value).values()))
            cells.append("—" if iv is None else iv.text(m.digits, m.scale))
        scored = [r for r in mine if any(m.value(r) is not None for m in metrics)]
        body.append([title_of(cat), f"**{label}**", f"{len({r['prompt'] for r in scored})} x {_seeds(scored)}", *cells])
    return md_table(header, body)


def comparisons(rows: list[dict], categories: list[str], metrics: list[StatMetric], baseline: str) -> list[dict]:
    """Every (category, method, metric) paired difference against the baseline label."""
    base_label = find_baseline(rows, baseline)
    if base_label is None:
        return []
    out = []
    for cat in categories:
        in_cat = [r for r in rows if r["category"] == cat]
        base_rows = [r for r in in_cat if r["label"] == base_label]
        others = [(label, mine) for label, _, _, mine in by_label(in_cat) if label != base_label]
        for m in metrics:
            base = stats.per_prompt(base_rows, m.value)
            compared = [(label, stats.per_prompt(mine, m.value)) for label, mine in others]
            compared = [(label, v) for label, v in compared if v]
            for label, values in compared:
                d = stats.paired_difference(values, base, m.lower_is_better, comparisons=len(compared))
                if d is not None:
                    out.append({"category": cat, "label": label, "baseline": base_label, "metric": m, "diff": d})
    return out


def comparison_table(found: list[dict], metrics: list[StatMetric], title_of: Callable[[str], str]) -> str:
    """Category | Method | per metric: difference [adjusted interval], better/worse prompts, verdict."""
    header = ["Category", "Method", *(f"{m.name}: difference, better/worse prompts" for m in metrics)]
    keyed = {(c["category"], c["label"], c["metric"].name): c["diff"] for c in found}
    body = []
    for cat, label in dict.fromkeys((c["category"], c["label"]) for c in found):
        line = [title_of(cat), f"**{label}**"]
        for m in metrics:
            d = keyed.get((cat, label, m.name))
            line.append("—" if d is None else
                        f"{d.difference.text(m.digits, m.scale, signed=True)}, {d.better}/{d.worse}: {d.verdict}")
        body.append(line)
    return md_table(header, body)


def uncertainty_section(rows: list[dict], categories: list[str], metrics: list[StatMetric], baseline: str,
                        title_of: Callable[[str], str] = str) -> list[str]:
    """The intervals table and the paired comparison table, with how they were computed."""
    lines = ["Mean over prompts (each prompt's seeds averaged first) with its 95% bootstrap interval over prompts "
             f"({stats.RESAMPLES:,} resamples, seed {stats.SEED}):", "",
             interval_table(rows, categories, metrics, title_of), ""]
    found = comparisons(rows, categories, metrics, baseline)
    if not found:
        return lines + [f"No paired comparisons: no `{baseline}` runs in this job (`--baseline` names another)."]
    base_label = found[0]["baseline"]
    lines += [f"Paired by prompt against **{base_label}** (`--baseline`): the mean per-prompt difference (method - "
              f"{base_label}) with its bootstrap interval, {stats.ADJUSTMENT}-adjusted over the methods compared in "
              "the category (k methods: each interval at 1 - 0.05/k); prompts where the method is better / worse. "
              "\"better\" / \"worse\": the interval excludes 0; \"no detectable difference\": it contains 0; "
              f"\"too few prompts\": fewer than {stats.MIN_PROMPTS} prompts in common.", "",
              comparison_table(found, metrics, title_of), ""]
    return lines


def comparison_sentences(rows: list[dict], categories: list[str], metrics: list[StatMetric], baseline: str,
                         title_of: Callable[[str], str] = str) -> list[str]:
    """One sentence per category and method: its verdict on each metric against the baseline."""
    found = comparisons(rows, categories, metrics, baseline)
    out = []
    for cat, label in dict.fromkeys((c["category"], c["label"]) for c in found):
        mine = [c for c in found if c["category"] == cat and c["label"] == label]
        parts = [f"{c['metric'].name} {c['diff'].verdict_text(c['metric'].digits, c['metric'].scale)}" for c in mine]
        out.append(f"{title_of(cat)}, {label} vs {mine[0]['baseline']}: " + "; ".join(parts) + ".")
    return out


def control_check(trows: list, metrics: list[tuple[str, bool]], categories: list[str],
                  title_of: Callable[[str], str] = str) -> list[str]:
    """Whether every metric orders the ToyBench controls (rows labelled 'control: <name>'): each
    negative control (empty, ball, noise) no better than any other control and worse than the fitted
    true scene, which is no worse than any control. `metrics`: (metric, lower_is_better). A missing
    value (Janus of a run that never shows the caption) counts as the worst."""
    negative = {f"control: {c}" for c in ("empty", "ball", "noise")}
    positive = "control: fitted truth"
    rows = {t.label: t for t in trows if getattr(t, "control", False)}
    if positive not in rows or not negative <= set(rows):
        return []
    out = []
    for cat in categories:
        verdicts = []
        for metric, lower in metrics:
            def score(label: str) -> float:
                cell = rows[label].cells.get(cat)
                v = None if cell is None else cell.values.get(metric)
                return float("-inf") if v is None else (-v if lower else v)  # higher = better here

            others = [label for label in rows if label not in negative]
            ok = all(score(n) <= score(o) for n in negative for o in others) and \
                all(score(n) < score(positive) for n in negative) and \
                all(score(positive) >= score(o) for o in rows)
            verdicts.append(f"{metric} {'holds' if ok else 'FAILS'}")
        out.append(f"Control order, {title_of(cat)} (negatives at the bottom, fitted truth at the top): "
                   + ", ".join(verdicts) + ".")
    return out
