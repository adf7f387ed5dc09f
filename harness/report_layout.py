"""The ToyBench report's layout section: where each two-object run put its objects.

ToyBench's alignment reads object *sets*, so a scene with one object stacked on the other passes
for the caption from every side, and the caption's order ("a X and a Y": X on the left) is never
checked. This section shows, per method, how often its runs stack the objects and how often the
first-named object is on the left (metrics/toybench_layout.py reads both from the Gaussians): a
diagnostic beside the scores, not a score.
"""

from __future__ import annotations

from typing import Callable

from harness.report_tables import md_table

TITLE = "ToyBench: layout (a diagnostic, not a score)"
HEADER = ["Category", "Method", "runs read", "stacked %", "first-named object on the left %"]


def layout_table(rows: list[dict], categories: list[str], title: Callable[[str], str]) -> list[list[str]]:
    """Per category and label (job order): the runs whose layout could be read, the share stacked
    and the share with the first-named object on the left. Categories with no readable run are left out."""
    import pandas as pd

    from metrics.toybench_layout import summarise

    body = []
    for category in categories:
        mine = pd.DataFrame([{"label": r["label"], "vertical": r["toybench_layout_vertical"],
                              "dy": r["toybench_layout_dy"], "stacked": bool(r["toybench_layout_stacked"])}
                             for r in rows if r["category"] == category and r.get("toybench_layout_vertical") is not None])
        if mine.empty:
            continue
        for label, s in summarise(mine).iterrows():
            body.append([title(category), f"**{label}**", str(int(s["runs"])), f"{s['stacked_pct']:.1f}",
                         f"{s['first_on_left_pct']:.1f}"])
    return body


def layout_section(rows: list[dict], categories: list[str], title: Callable[[str], str]) -> list[str]:
    """Markdown lines; empty when no run's layout is readable (one-object jobs, scores from before)."""
    body = layout_table(rows, categories, title)
    if not body:
        return []
    return [f"### {TITLE}", "",
            "Where each finished two-object run put its two colour clouds, read from its Gaussians "
            "(`metrics/toybench_layout.py`; captions whose objects differ in colour). *Stacked*: one above the "
            "other, a scene the judge reads as the caption from every side. The caption means the two side by "
            "side with the first-named on the left; the fitted true scenes are stacked in 0% and have the "
            "first-named on the left in 100% (`python -m metrics.toybench_layout JOB` prints that control).",
            "", md_table(HEADER, body), ""]
