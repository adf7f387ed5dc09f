"""The ToyBench report's object-size section: how large each method draws its objects.

The judge was trained on ToyWorld's renders, whose objects vary in size by 8% at most, and it reads a
scene drawn larger than the truth less surely (generators/toyworld/judge_validation.py, condition
"larger": a one-object scene scaled by 1.2 is read exactly in about two views of three, the rest
mostly "no reading"). The colour-area error also counts the extra area. So a method that draws its
objects large loses on both for size alone; this section shows, per method, the mean ratio of a
run's object area to the truth render's from the same cameras, and the share of runs at least
`LARGE_AREA_RATIO` times as large: a diagnostic beside the scores, not a score.
"""

from __future__ import annotations

from typing import Callable

from harness.report_tables import md_table

LARGE_AREA_RATIO = 1.3  # about the area of the judge-validation's "larger" scene (1.2^2 = 1.44), less a margin
TITLE = "ToyBench: object size (a diagnostic, not a score)"
HEADER = ["Category", "Method", "runs read", "object area / truth's (mean)",
          f"runs at >= {LARGE_AREA_RATIO}x the truth's area %", "alignment % of those runs"]


def size_table(rows: list[dict], categories: list[str], title: Callable[[str], str]) -> list[list[str]]:
    """Per category and label (in order of appearance): runs with both areas, the mean area ratio,
    the share of large runs and their mean alignment ("-" when there are none)."""
    body = []
    for category in categories:
        ratios: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            area, truth = r.get("toybench_object_area"), r.get("toybench_ref_object_area")
            if r["category"] != category or area is None or not truth:
                continue
            ratios.setdefault(r["label"], []).append((area / truth, r.get("toybench_alignment")))
        for label, pairs in ratios.items():
            large = [a for ratio, a in pairs if ratio >= LARGE_AREA_RATIO and a is not None]
            mean = sum(ratio for ratio, _ in pairs) / len(pairs)
            body.append([title(category), f"**{label}**", str(len(pairs)), f"{mean:.2f}",
                         f"{100.0 * len(large) / len(pairs):.1f}",
                         f"{100.0 * sum(large) / len(large):.1f}" if large else "-"])
    return body


def size_section(rows: list[dict], categories: list[str], title: Callable[[str], str]) -> list[str]:
    """Markdown lines; empty when no run has both areas (scores from before the column existed)."""
    body = size_table(rows, categories, title)
    if not body:
        return []
    return [f"### {TITLE}", "",
            "The area a run's objects cover in its 16 judged views over the area the truth's cover in the same "
            "views (ToyWorld's renderer, same cameras). The judge reads a scene drawn larger than the truth less "
            "surely (scaled by 1.2, a one-object scene is read exactly in about two views of three: "
            "`python -m generators.toyworld.judge_validation`), and the colour-area error counts the extra area: "
            "a method that draws large loses on both for size alone.", "", md_table(HEADER, body), ""]
