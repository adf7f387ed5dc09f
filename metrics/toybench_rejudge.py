"""A job's ToyBench views read again by another judge: is a verdict the judge's or the methods'?

    python -m metrics.toybench_rejudge JOB --judge generators/models/toy/judge-scale --baseline sds-cfg-tuned

ToyBench keeps each run's judged views (`toybench_views.png`, 8-bit, lossless: exactly what the
judge read). This reads them with another judge, with the settings the runs were scored with
(threshold, Janus fraction, view grid), and prints the report's intervals and paired comparisons
(harness/report_stats.py, the same code) for alignment and consistency, beside the committed
judge's. Nothing in the run folders or the job's scores changes: it is a sensitivity check. With
the committed judge it reproduces the recorded numbers exactly (a test holds it to that).

Writes RESULTS/JOB/rejudge-<judge folder name>.md (atomically) unless --no-write.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from generators.errors import UserError, report_error
from generators.io import atomic_write_text

REJUDGED = ("alignment", "consistency")


def split_views(grid: np.ndarray, size: int, columns: int) -> torch.Tensor:
    """A views PNG (a row per elevation, `columns` views of `size` px each) -> [V, size, size, 3] in [0, 1]."""
    rows = grid.shape[0] // size
    if grid.shape[0] != rows * size or grid.shape[1] != columns * size:
        raise UserError(f"a views grid of {grid.shape[1]}x{grid.shape[0]} px is not {columns} columns of {size} px")
    tiles = grid.reshape(rows, size, columns, size, 3).transpose(0, 2, 1, 3, 4).reshape(rows * columns, size, size, 3)
    return torch.from_numpy(tiles.astype(np.float32) / 255.0)


def rejudge_run(judge, path: Path, caption: str, settings: dict) -> dict:
    """A run's ToyBench readings as `judge` reads its saved judged views (`path`) under the run's settings."""
    from PIL import Image

    from metrics.toybench import judged_sets, view_agreement

    if not path.is_file():
        raise UserError(f"{path}: missing (the run's judged views; re-score it with harness eval)")
    views = split_views(np.asarray(Image.open(path).convert("RGB")), settings["size"], settings["num_azimuths"])
    sets, pred = judged_sets(judge, views, settings["min_object_probability"])
    return view_agreement(sets, pred, caption, settings["janus_min_fraction"])


def rejudge_job(job: str, judge_dir: Path, results: Path = Path("results"), log=print) -> list[dict]:
    """The job's scored ToyBench rows (from its scores.parquet), each with `rejudged_<number>` columns."""
    import pandas as pd

    from generators.toyworld.judge import load_judge
    from metrics.evaluate import TOYBENCH_VIEWS

    scores = results / job / "scores.parquet"
    if not scores.is_file():
        raise UserError(f"{scores}: no scores (run `python -m harness report {job}` first)")
    df = pd.read_parquet(scores)
    df = df[df["toybench_status"] == "done"] if "toybench_status" in df else df.iloc[0:0]
    if df.empty:
        raise UserError(f"{scores}: no scored ToyBench runs")
    judge = load_judge(judge_dir)
    rows = []
    for i, row in enumerate(df.to_dict("records")):
        # the judged views' PNG as the report recorded it: relative to where it ran, or to RESULTS' parent
        path = Path(row.get("toybench_views_png") or Path(row["run_dir"]) / TOYBENCH_VIEWS)
        if not path.is_absolute() and not path.exists():
            path = results.parent / path
        got = rejudge_run(judge, path, row["prompt"], json.loads(row["toybench_settings"]))
        rows.append({**row, **{f"rejudged_{k}": got[k] for k in REJUDGED}})
        if log and (i + 1) % 100 == 0:
            log(f"{i + 1}/{len(df)} runs read")
    return rows


def rejudge_report(job: str, rows: list[dict], judge_dir: Path, baseline: str) -> str:
    """Markdown: the committed judge's and the other judge's intervals and paired comparisons."""
    from harness.report import TOYBENCH_STATS
    from harness.report_stats import StatMetric, column, uncertainty_section
    from harness.report_tables import toybench_categories, toybench_category_title

    cats = toybench_categories(rows)
    by_name = {m.name: m for m in TOYBENCH_STATS}
    committed = [by_name[f"{k} %"] for k in REJUDGED]  # the report's own metrics: names, scales, directions
    other = [StatMetric(f"{m.name}, {judge_dir.name}", column(f"rejudged_{k}"), m.lower_is_better, m.scale, m.digits)
             for k, m in zip(REJUDGED, committed)]
    changed = sum(r[f"rejudged_{k}"] != r[f"toybench_{k}"] for r in rows for k in REJUDGED)
    return "\n".join([
        f"# {job}: the views read again by `{judge_dir}`", "",
        f"`python -m metrics.toybench_rejudge {job} --judge {judge_dir} --baseline {baseline}`. "
        f"{len(rows)} runs; {changed} of their {len(rows) * len(REJUDGED)} numbers differ from the recorded ones. "
        "The runs' saved judged views, read with the settings they were scored with; nothing else changes.", "",
        "## The committed judge (as recorded)", "",
        *uncertainty_section(rows, cats, committed, baseline, toybench_category_title), "",
        f"## {judge_dir.name}", "",
        *uncertainty_section(rows, cats, other, baseline, toybench_category_title), ""])


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("job", help="a job with a scores.parquet in RESULTS/JOB")
    ap.add_argument("--judge", type=Path, required=True, help="the judge folder to read the views with")
    ap.add_argument("--baseline", default="sds", help="the label the paired comparisons are against")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        rows = rejudge_job(args.job, args.judge, args.results)
        text = rejudge_report(args.job, rows, args.judge, args.baseline)
    except UserError as e:
        return report_error(e)
    print(text)
    if not args.no_write:
        out = args.results / args.job / f"rejudge-{args.judge.name}.md"
        atomic_write_text(out, text + "\n")
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
