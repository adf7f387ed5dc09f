"""`make report JOB=...`: a job's scores -> scores.parquet, report.md, report.html, figures (no GPU).

    python -m harness.report --job paper-table1 [--results results]
    paths = build_report("paper-table1", specs_or_run_dirs, "results")

Reads only what the runs left on disk (status.json, config.yaml, metrics.json, views.png) and the
published numbers in results/reference/*.yaml (one exception: the ToyBench grids' ground-truth row
is drawn by the ToyWorld renderer, metrics.toybench.ground_truth_views, as the metric drew it).
Writes, atomically, into RESULTS/<job>/:

    scores.parquet   one row per planned run (missing and failed runs included, metrics empty)
    report.md        T3Bench table (AnchorDS Table 1 layout) + quality/alignment breakdown,
                     ablation, CLIP, published reference rows; ToyBench table; gaps, protocol note
    report.html      the same tables with the per-prompt grids
    toybench.parquet the ToyBench table, long form (one row per method or ground truth x category)
    figures/t3bench_by_category.png, grids/<category>-<index>-seed<seed>.png,
    grids/toybench-<category>-<index>-seed<seed>.png

Each benchmark's sections appear when the job has runs of it (harness.report_collect: a ToyBench
run is one of the toybench prompt categories or the `toy` model set) or scores of it: a T3Bench
job's report is as it always was, a ToyBench-only job's has no T3Bench tables, and the reverse.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from generators.errors import UserError
from generators.io import atomic_write, atomic_write_text
from harness.report_collect import SCORED, collect_rows
from harness.report_figures import bar_chart, prompt_grids, toybench_grids
from harness.report_tables import (any_partial, ablation_table, breakdown_table, clip_table, is_t3bench_row,
                                   is_toybench_row, md_table, method_rows, t3bench_table, toybench_frame_rows,
                                   toybench_partial, toybench_rows, toybench_summary, toybench_table)

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "results" / "reference"
MAX_GAP_LINES = 300  # gaps listed one per line up to this many; the counts table covers all
REFERENCE_TABLES = ("t3bench", "ablation", "clip")


def load_references(folder: Path = REFERENCE_DIR) -> list[dict]:
    """Every results/reference/*.yaml, checked for the keys the tables read."""
    refs = []
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict) or not data.get("source") or data.get("table") not in REFERENCE_TABLES \
                or not isinstance(data.get("rows"), list):
            raise UserError(f"{path}: a reference file needs 'source', 'table' ({', '.join(REFERENCE_TABLES)}) and 'rows'")
        data["file"] = path.name
        data["short"] = path.stem
        refs.append(data)
    return refs


def resolve_job(job: str, results: Path) -> tuple[str, list]:
    """(job name, planned RunSpecs) for a job name with a saved plan, a job file, or jobs/<name>.yaml."""
    from harness.benchmark import PLAN_FILE, load_plan
    from harness.jobs import check_job_name, load_job
    from harness.plan import plan_job

    path = Path(job)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        j = load_job(path)
        return j.name, plan_job(j)
    check_job_name(job)  # a name, never a path: `../x` would read and write outside RESULTS
    if (results / job / PLAN_FILE).is_file():
        return job, load_plan(results / job)[1]
    repo_job = Path(__file__).resolve().parents[1] / "jobs" / f"{job}.yaml"
    if repo_job.is_file():
        j = load_job(repo_job)
        return j.name, plan_job(j)
    raise UserError(f"no job {job!r}: not a job file, not a job in {results}, not jobs/{job}.yaml")


# ----------------------------------------------------------------------------------------------
# Report text


def _protocol_note(rows: list[dict]) -> str:
    def used(key: str) -> str:
        vals = sorted({str(r[key]) for r in rows if r.get(key)})
        return ", ".join(f"`{v}`" for v in vals) or "none recorded yet"

    clip = sorted({f"{r['clip_model']} / {r['clip_pretrained']}" for r in rows if r.get("clip_model")})
    return "\n".join([
        "## Protocol",
        "",
        "- **We render the Gaussians directly**; T3Bench renders exported, decimated meshes (flat-shaded "
        "textures, pyrender). The camera protocols are T3Bench's (quality: 162 icosphere points x 5 fields "
        "of view at radius 2.2, 512 px; alignment: 12 views at distance 4.84, as T3Bench's double radius), "
        "and the object is centred and scaled as T3Bench does with meshes (mean of the Gaussian means, max "
        "absolute coordinate -> [-1, 1]). Our numbers are therefore comparable in protocol, not identical in "
        "rendering.",
        "- Quality: ImageReward per view, best field of view per point, 3 rounds of icosphere-neighbour "
        "averaging, best point, 20 s + 50 (not clipped). Alignment: a BLIP-2 caption per view, merged and "
        "rated 1-5 by a judge, (mean - 1) / 4 x 100 over the prompts with a rating. Our captions are seeded "
        "(T3Bench's are not); the judge's rating instructions are our reconstruction of T3Bench's wording.",
        "- Avg_cat = (Quality + Alignment) / 2; All = mean of the three categories (T3Bench's project-page "
        "formula). Published rows were produced by other code, judges and renderers: they are references, "
        "not like-for-like comparisons.",
        f"- ImageReward: {used('quality_model')}",
        f"- Captioner: {used('captioner')}",
        f"- Judge: {used('judge')} (settings per run in scores.parquet, column judge_settings)",
        f"- CLIP: {', '.join(f'`{c}`' for c in clip) or 'none recorded yet'}",
        f"- Metric model sets: {used('quality_model_set')}",
    ])


def _toybench_protocol_note(rows: list[dict]) -> str:
    def used(key: str) -> str:
        vals = sorted({str(r[key]) for r in rows if r.get(key)})
        return ", ".join(f"`{v}`" for v in vals) or "none recorded yet"

    settings = sorted({r["toybench_settings"] for r in rows if r.get("toybench_settings")})
    cams, janus = "not recorded yet", "`janus_min_fraction`"
    if settings:
        s = json.loads(settings[0])
        cams = (f"{s.get('num_azimuths')} azimuths from {s.get('start_azimuth_deg')} deg x elevations "
                f"{s.get('elevations_deg')} deg, distance {s.get('distance')}, fov {s.get('fov_y_deg')} deg, "
                f"{s.get('size')} px")
        janus = str(s.get("janus_min_fraction", janus))
        if len(settings) > 1:
            cams += f" ({len(settings)} different settings among the runs: see scores.parquet, toybench_settings)"
    return "\n".join([
        "### ToyBench",
        "",
        f"- Views: {cams}, in the world's own frame (no T3Bench normalisation).",
        "- Alignment: share of views where the judge sees exactly the caption's objects (count, shape and colour). "
        "Consistency: share of views showing the run's most common judged set. Janus: a second judged set in at "
        f"least {janus} of the views (rate = share of runs). Quality: colour-area error, lower is better: "
        "per view, the area of each world colour against the true scene's from the same camera, relative to the "
        "true scene's object area (0 = right colours at the right size, 1 = as far off as an empty view, above 1 = "
        "further off than nothing: an oversized object, floaters). A proxy, blind to position and orientation.",
        "- Ground truth: a ToyWorld sample of the caption (the world's renderer, objects turned and scaled as in the "
        "prior's training data) from the same cameras, scored the same way "
        "(each prompt once): the protocol's ceiling, not 100% (the judge misreads some views, objects hide each other).",
        "- Cells are means over the scored runs (prompts and seeds); `all` pools every run of the method. "
        "Per-category numbers in toybench.parquet (fractions 0..1), per run in scores.parquet (toybench_*).",
        f"- Judge: {used('toybench_judge')}; "
        f"metric model sets: {used('toybench_model_set')}",
    ])


def _gaps(rows: list[dict]) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = ["## Gaps", ""]
    bad = df[df["status"] != SCORED]
    if bad.empty:
        lines.append("None: every planned run is finished and has every score.")
        return "\n".join(lines)
    counts = bad.groupby(["label", "status"]).size().unstack(fill_value=0)
    header = ["Method", *counts.columns]
    lines += [md_table(header, [[i, *map(str, r)] for i, r in zip(counts.index, counts.values.tolist())]), ""]
    body = []
    for r in bad.head(MAX_GAP_LINES).to_dict("records"):
        idx = "" if r.get("prompt_index") is None or r["prompt_index"] != r["prompt_index"] else str(int(r["prompt_index"]))
        body.append([r["label"], r["category"], idx, str(r["seed"]), r["prompt"], r["status"], r.get("reason") or ""])
    lines.append(md_table(["Method", "Category", "#", "Seed", "Prompt", "Status", "Reason"], body))
    if len(bad) > MAX_GAP_LINES:
        lines.append(f"\n... and {len(bad) - MAX_GAP_LINES} more (all in scores.parquet, column status).")
    return "\n".join(lines)


def _references_section(refs: list[dict]) -> str:
    lines = ["## Published reference rows", "",
             "Rows marked *published* in the tables above are copied from these sources, not computed here:", ""]
    for ref in refs:
        verified = "verified" if ref.get("verified") else "unverified"
        lines.append(f"- `{ref['short']}` ({verified}): {ref['source']}")
        for r in ref["rows"]:
            if r.get("note"):
                lines.append(f"  - † {r['label']}: {' '.join(str(r['note']).split())}")
    return "\n".join(lines)


def render_markdown(job: str, rows: list[dict], refs: list[dict], chart_note: Optional[str], grids: list[dict],
                    toy_grids: Optional[list[dict]] = None) -> str:
    t3_rows = [r for r in rows if is_t3bench_row(r)]
    mrows = method_rows(t3_rows)
    trows = toybench_rows(rows)
    by_table = {t: [r for r in refs if r["table"] == t] for t in REFERENCE_TABLES}
    seeds = sorted({r["seed"] for r in rows})
    parts = [f"# Report: {job}", ""]
    if t3_rows and any_partial(mrows):
        parts += ["> **PARTIAL RESULTS.** Some cells average fewer runs than the job plans (n=k/N with k < N). "
                  "Partial cells are not comparable with the published full-benchmark numbers. See **Gaps**.", ""]
    elif toybench_partial(trows):
        parts += ["> **PARTIAL RESULTS.** Some ToyBench cells average fewer runs than the job plans "
                  "(n=k/N with k < N). See **Gaps**.", ""]
    metric_sets = {r.get(f"{s}_model_set") for r in rows for s in ("quality", "alignment", "clip")} - {None}
    if "tiny" in metric_sets or any(r.get("models") == "tiny" for r in rows):
        parts += ["> **TINY MODELS.** Some runs were generated or scored with the embedded tiny random models: "
                  "their numbers exercise the pipeline and mean nothing.", ""]
    parts += [f"{len(rows)} planned runs, seeds {seeds}; "
              f"{sum(r['status'] == SCORED for r in rows)} fully scored. Cells: value (n=scored/expected).", ""]
    if t3_rows:
        parts += ["## T3Bench (AnchorDS Table 1 layout)", "",
                  "Each cell is (Quality + Alignment) / 2 for the category; All is the mean of the three categories.",
                  "", md_table(*t3bench_table(mrows, by_table["t3bench"])), ""]
        parts += ["### Quality (ImageReward, 20 s + 50)", "", md_table(*breakdown_table(mrows, "quality")), ""]
        parts += ["### Alignment ((mean rating - 1) / 4 x 100)", "", md_table(*breakdown_table(mrows, "alignment")), ""]
        ablation = by_table["ablation"][0] if by_table["ablation"] else None
        parts += ["## Ablation (T3Bench All, gain over SDS)", "", md_table(*ablation_table(mrows, ablation)), ""]
        clip_ref = by_table["clip"][0] if by_table["clip"] else None
        parts += ["## CLIP score (mean cosine over the CLIP views)", "", md_table(*clip_table(mrows, t3_rows, clip_ref)), ""]
    if trows:
        parts += ["## ToyBench (ToyWorld judge on 16 views per run)", "",
                  "Means over the scored runs; n = scored/planned runs (ground truth: prompts). Alignment, consistency "
                  "and Janus rate in % (higher alignment and consistency and lower Janus are better); quality is the "
                  "colour-area error, lower is better (1 = as far off as an empty view). The last row is the ToyWorld renderer's own picture of each "
                  "caption from the same cameras: the protocol's ceiling.",
                  "", md_table(*toybench_table(trows)), ""]
        parts += [*toybench_summary(trows), ""]
    parts += ["## Figures", ""]
    if t3_rows:
        parts.append(f"![T3Bench by category](figures/t3bench_by_category.png)" if chart_note is None
                     else f"No bar chart: {chart_note}.")
        parts.append("")
    parts += [f"{len(grids)} per-prompt grids of every method's views in `grids/` (and in report.html).", ""]
    if trows:
        parts += [f"{len(toy_grids or [])} ToyBench grids (per prompt and seed, one row per method with its judged "
                  "views and numbers, and a last row of the ToyWorld renderer's ground truth from the same cameras) "
                  "in `grids/toybench-*.png` (and in report.html).", ""]
    parts += [_gaps(rows), ""]
    if t3_rows:
        parts += [_references_section(refs), ""]
    if t3_rows:
        parts += [_protocol_note(t3_rows), ""]
        if trows:
            parts += [_toybench_protocol_note([r for r in rows if is_toybench_row(r)]), ""]
    elif trows:
        parts += ["## Protocol", "", _toybench_protocol_note([r for r in rows if is_toybench_row(r)]), ""]
    return "\n".join(parts)


def render_html(job: str, markdown_text: str, grids: list[dict], toy_grids: Optional[list[dict]] = None) -> str:
    """A static page: the report's tables (as preformatted markdown tables) and every grid."""
    body = [f"<h1>Report: {html.escape(job)}</h1>", "<pre>", html.escape(markdown_text), "</pre>", "<h2>Per-prompt views</h2>"]
    for title, gs in ((None, grids), ("ToyBench: judged views, one row per method", toy_grids or [])):
        if title and gs:
            body.append(f"<h2>{html.escape(title)}</h2>")
        for g in gs:
            body.append(f"<figure><img src='grids/{html.escape(g['file'])}' style='max-width:100%'>"
                        f"<figcaption>{html.escape(g['category'])} #{g['prompt_index']} seed {g['seed']}: "
                        f"{html.escape(g['prompt'])}</figcaption></figure>")
    return "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(job) + \
        "</title></head><body>" + "\n".join(body) + "</body></html>\n"


# ----------------------------------------------------------------------------------------------


def write_scores(rows: list[dict], path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


def build_report(job_name: str, runs: Iterable[Any], results_dir: str | Path,
                 reference_dir: Path = REFERENCE_DIR) -> dict:
    """Collect every run (RunSpecs of the job's plan, or run directories) and write the report.

    Returns {scores, report, html, chart (None when not drawn), grids: [paths],
    toybench (toybench.parquet, None without ToyBench runs), toybench_grids: [paths]}.
    """
    results = Path(results_dir)
    runs = list(runs)
    if not runs:
        raise UserError(f"job {job_name!r} plans no runs: nothing to report")
    rows = collect_rows(runs, results)
    refs = load_references(reference_dir)
    out = results / job_name
    write_scores(rows, out / "scores.parquet")
    t3_rows = [r for r in rows if is_t3bench_row(r)]
    chart = out / "figures" / "t3bench_by_category.png"
    chart_note = bar_chart(method_rows(t3_rows), chart) if t3_rows else "no T3Bench runs"
    labels = list(dict.fromkeys(r["label"] for r in rows))
    grids = prompt_grids(rows, labels, out / "grids")
    toy = [r for r in rows if is_toybench_row(r)]
    trows = toybench_rows(rows)
    toy_grids = toybench_grids(toy, list(dict.fromkeys(r["label"] for r in toy)), out / "grids") if toy else []
    toy_table = None
    if trows:
        toy_table = out / "toybench.parquet"
        write_scores(toybench_frame_rows(trows), toy_table)
    text = render_markdown(job_name, rows, refs, chart_note, grids, toy_grids)
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "report.html", render_html(job_name, text, grids, toy_grids))
    return {"scores": out / "scores.parquet", "report": out / "report.md", "html": out / "report.html",
            "chart": None if chart_note else chart, "grids": [out / "grids" / g["file"] for g in grids],
            "toybench": toy_table, "toybench_grids": [out / "grids" / g["file"] for g in toy_grids]}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n")[0])
    p.add_argument("--job", required=True, help="job name (with a saved plan in RESULTS/<job>/), or a job file")
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args(argv)
    try:
        name, specs = resolve_job(args.job, args.results)
        paths = build_report(name, specs, args.results)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"report: {paths['report']}\nscores: {paths['scores']}\nhtml:   {paths['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
