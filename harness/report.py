"""`make report JOB=...`: a job's scores -> scores.parquet, report.md, report.html, figures (no GPU).

    python -m harness.report --job paper-table1 [--results results]
    paths = build_report("paper-table1", specs_or_run_dirs, "results")

Reads only what the runs left on disk (status.json, config.yaml, metrics.json, views.png) and the
published numbers in results/reference/*.yaml (one exception: the ToyBench grids' ground-truth row
is drawn by the ToyWorld renderer, metrics.toybench.ground_truth_views, as the metric drew it).
Writes, atomically, into RESULTS/<job>/:

    scores.parquet   one row per planned run (missing and failed runs included, metrics empty), and
                     one more per run scored on its exported mesh (column source: gaussians | mesh)
    report.md        per scorer (source, judge, captioner): T3Bench quality-only table (AnchorDS
                     Table 1 layout), (Q + A) / 2 table (leaderboard), alignment, ablation; CLIP;
                     intervals and paired comparisons; published reference rows; ToyBench table
                     with its controls; gaps, protocol note
    report.html      the benchmark browser's index (harness/browser/): sortable tables, charts, loss
                     curves, every prompt; ranked.html, prompts/<page>.html, assets/, media/, splats/
    toybench.parquet the ToyBench table, long form (one row per method or ground truth x category)
    figures/t3bench_by_category.png, grids/<category>-<index>-seed<seed>.png,
    grids/toybench-<category>-<index>-seed<seed>.png

Each benchmark's sections appear when the job has runs of it (harness.report_collect: a ToyBench
run is one of the toybench prompt categories or the `toy` model set) or scores of it: a T3Bench
job's report is as it always was, a ToyBench-only job's has no T3Bench tables, and the reverse.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from generators.errors import UserError, report_error
from generators.io import atomic_write, atomic_write_text
from generators.untrusted import safe_load
from harness.report_collect import MISSING, PARTIAL, SCORED, collect_rows
from harness.report_figures import bar_chart, prompt_grids, toybench_grids
from harness.report_layout import layout_section
from harness.report_size import size_section
from harness.report_settings import LabelSettings, settings_section
from harness.report_tables import (METRICS, any_partial, categories_of, clip_table, is_t3bench_row,
                                   is_toybench_row, md_table, method_rows, scorer_groups, scorer_title,
                                   t3bench_tables, toybench_categories, toybench_category_title,
                                   toybench_frame_rows, toybench_partial, toybench_rows, toybench_table)
from harness.report_stats import (DEFAULT_BASELINE, StatMetric, column, comparison_sentences, control_check,
                                  uncertainty_section)

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "results" / "reference"
MAX_GAP_LINES = 300  # gaps listed one per line up to this many; the counts table covers all
REFERENCE_TABLES = ("t3bench", "ablation", "clip")


def _t3_alignment(r: dict) -> Optional[float]:
    rating = r.get("alignment_rating")
    return None if rating is None or rating != rating else (float(rating) - 1.0) / 4.0 * 100.0


def _t3_avg(r: dict) -> Optional[float]:
    q, a = r.get("quality"), _t3_alignment(r)
    return None if q is None or q != q or a is None else (float(q) + a) / 2.0


# the per-run numbers the uncertainty sections resample (T3Bench: a prompt's Avg = (quality + alignment) / 2)
T3BENCH_STATS = [StatMetric("Avg", _t3_avg, False, digits=1), StatMetric("Quality", column("quality"), False, digits=1),
                 StatMetric("Alignment", _t3_alignment, False, digits=1)]
TOYBENCH_STATS = [StatMetric("alignment %", column("toybench_alignment"), False, 100.0, 1),
                  StatMetric("consistency %", column("toybench_consistency"), False, 100.0, 1),
                  StatMetric("Janus %", column("toybench_janus"), True, 100.0, 1),
                  StatMetric("quality (colour-area error)", column("toybench_quality"), True, 1.0, 3)]


def load_references(folder: Path = REFERENCE_DIR) -> list[dict]:
    """Every results/reference/*.yaml, checked for the keys the tables read."""
    refs = []
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            data = safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict) or not data.get("source") or data.get("table") not in REFERENCE_TABLES \
                or not isinstance(data.get("rows"), list):
            raise UserError(f"{path}: a reference file needs 'source', 'table' ({', '.join(REFERENCE_TABLES)}) and 'rows'")
        if data["table"] in ("t3bench", "ablation"):  # every T3Bench number says which metric it is
            for row in data["rows"]:
                metric = row.get("metric", data.get("metric"))
                if metric not in METRICS:
                    raise UserError(f"{path}: row {row.get('label')!r} needs a 'metric' (file or row): one of "
                                    f"{', '.join(METRICS)}, got {metric!r}")
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
        "(T3Bench's are not); the judge gets T3Bench's own words (prompts/t3bench/judge), views numbered 1..12.",
        "- Scored runs of different judges, captioners or sources (Gaussians, exported meshes) are never pooled: "
        "each has its own tables, named in their titles. The exported-mesh path (when present) renders a mesh "
        "extracted from the Gaussians as T3Bench renders meshes (unlit colours, black background, T3Bench's "
        "normalisation and cameras).",
        "- Avg_cat = (Quality + Alignment) / 2; All = mean of the three categories (T3Bench's project-page "
        "formula). Published rows were produced by other code, judges and renderers: they are references, "
        "not like-for-like comparisons.",
        f"- ImageReward: {used('quality_model')}",
        f"- Captioner: {used('captioner')}",
        f"- Judge: {used('judge')} (settings per run in scores.parquet, column judge_settings)",
        f"- CLIP: {', '.join(f'`{c}`' for c in clip) or 'none recorded yet'}",
        f"- Metric model sets: {used('quality_model_set')}",
    ])


def _toybench_definitions(version: int, janus: str, min_probability: str = "`min_object_probability`") -> list[str]:
    """The ToyBench metrics as the scores' metric version defines them (settings.metric_version)."""
    if version < 2:
        return ["- **Metric version 1** (scored before the controls and the redesign; the current code scores "
                "version 2). Alignment: share of views where the judge sees exactly the caption's objects (count, "
                "shape and colour). Consistency: share of views showing the run's most common judged set. Janus: a "
                f"second judged set in at least {janus} of the views (rate = share of runs). Quality: colour-area "
                "error, lower is better: per view, the area of each world colour against the true scene's from the "
                "same camera, relative to the true scene's object area (0 = right colours at the right size, 1 = as "
                "far off as an empty view, above 1 = further off than nothing: an oversized object, floaters). "
                "Known flaws of version 1: an empty view has a lower quality error than every two-object method had, and a blank or "
                "view-invariant blob scores consistency 100 and Janus 0."]
    return [f"- **Metric version {version}.** A view's reading is the judge's object set when the judge gives each "
            f"of its objects a probability of at least {min_probability}, else none (empty views, the initial ball and colour noise "
            "get none). Alignment: share of views read as exactly the caption's objects. Consistency: for each of the "
            "caption's objects the share of views whose reading contains it, the smallest over the caption's objects "
            "(an object that shows from some sides only, or turns into another, lowers it; floaters do not). Janus: "
            f"among runs whose views show the caption in at least {janus} of the views, a second reading in at least "
            f"{janus} of them (rate over those runs; runs that never show the caption have no Janus value). Quality: "
            "colour-area error capped at 1 per view, lower is better (0 = right colours at the right size, 1 = as far "
            "off as an empty view, or further). A proxy, blind to position and orientation.",
            "- Controls, scored from the same cameras against the same truth (once per prompt): an empty scene, the "
            "initial ball (the `toy` set's init), colour noise, the true scene of a caption with no object in common, "
            "and the true scene fitted as 3D Gaussians (a photometric fit to ToyWorld's renders through our "
            "rasterizer). Every metric must put the first three at the bottom and the fitted scene at the top."]


def _toybench_protocol_note(rows: list[dict]) -> str:
    def used(key: str) -> str:
        vals = sorted({str(r[key]) for r in rows if r.get(key)})
        return ", ".join(f"`{v}`" for v in vals) or "none recorded yet"

    generation_sets = _generation_sets(rows)
    settings = sorted({r["toybench_settings"] for r in rows if r.get("toybench_settings")})
    cams, janus, version = "not recorded yet", "`janus_min_fraction`", 1
    min_probability = "`min_object_probability`"
    if settings:
        s = json.loads(settings[0])
        version = s.get("metric_version", 1)
        min_probability = str(s.get("min_object_probability", "`min_object_probability`"))
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
        *(_toybench_definitions(version, janus, min_probability)),
        "- Ground truth: a ToyWorld sample of the caption (the world's renderer, objects turned and scaled as in the "
        "prior's training data) from the same cameras, scored the same way "
        "(each prompt once): the protocol's ceiling, not 100% (the judge misreads some views, objects hide each other).",
        "- Cells are means over the scored runs (prompts and seeds); `all` pools every run of the method. "
        "Per-category numbers in toybench.parquet (fractions 0..1), per run in scores.parquet (toybench_*).",
        f"- Judge: {used('toybench_judge')}; "
        f"metric model sets: {used('toybench_model_set')}; "
        f"generation model sets: {', '.join(f'`{s}`' for s in generation_sets) or 'none recorded yet'}"
        + (" (`toy` with no version: the prior at step 7,286)" if "toy" in generation_sets else ""),
    ])


def _generation_set(row: dict) -> Optional[str]:
    """The model set (with its version) a run was made with; None for a run that never started."""
    from generators.models.fingerprint import identity

    if not (row.get("models") and row.get("run_state")):
        return None
    return identity(str(row["models"]), str(row.get("models_version") or ""))


def _refuse_pooled_versions(rows: list[dict]) -> None:
    """A method's cells never pool runs of two versions of a model set's weights (two ToyWorld
    priors): UserError naming them (e.g. --from-scores over jobs run before and after a new prior)."""
    seen: dict[tuple, set] = {}
    for r in rows:
        if (made_with := _generation_set(r)) is not None:
            seen.setdefault((str(r["label"]), str(r["models"])), set()).add(made_with)
    mixed = {label: sorted(sets) for (label, _), sets in seen.items() if len(sets) > 1}
    if mixed:
        label, sets = next(iter(mixed.items()))
        raise UserError(f"the runs of {label!r} were made with different model set versions ({', '.join(sets)}): "
                        f"their scores are not pooled; report each version's runs as a job of their own")


def _generation_sets(rows: list[dict]) -> list[str]:
    """The model sets the runs were made with, versions included (generators/models/fingerprint.py)."""
    return sorted({s for s in map(_generation_set, rows) if s is not None})


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


def _t3bench_sections(rows: list[dict], title: str, by_table: dict) -> list[str]:
    """The T3Bench tables of runs of one scorer, as Markdown sections."""
    parts = []
    for level, heading, explanation, table in t3bench_tables(rows, by_table, title):
        parts += [f"{'#' * level} {heading}", "", *([explanation, ""] if explanation else []), md_table(*table), ""]
    return parts


def render_markdown(job: str, rows: list[dict], refs: list[dict], chart_note: Optional[str], grids: list[dict],
                    toy_grids: Optional[list[dict]] = None, baseline: str = DEFAULT_BASELINE,
                    notice: Optional[str] = None, mesh_rows: Optional[list[dict]] = None) -> str:
    t3_rows = [r for r in rows if is_t3bench_row(r)]
    mrows = method_rows(t3_rows)
    trows = toybench_rows(rows)
    by_table = {t: [r for r in refs if r["table"] == t] for t in REFERENCE_TABLES}
    seeds = sorted({r["seed"] for r in rows})
    parts = [f"# Report: {job}", ""]
    if notice:
        parts += [f"> {notice}", ""]
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
    settings = LabelSettings.of(rows)
    mixed = settings.mixed()
    if mixed:
        parts += [f"> **MIXED SETTINGS.** The runs of {', '.join(f'`{lb}`' for lb in mixed)} were not all made with "
                  "the same settings, so their cells pool different things. See **Settings as run**.", ""]
    parts += [f"{len(rows)} planned runs, seeds {seeds}; "
              f"{sum(r['status'] == SCORED for r in rows)} fully scored. Cells: value (n=scored/expected).", ""]
    if t3_rows:
        mesh_t3 = [r for r in (mesh_rows or []) if is_t3bench_row(r)]
        for key, group in scorer_groups(t3_rows + mesh_t3):
            parts += _t3bench_sections(group, scorer_title(key), by_table)
        clip_ref = by_table["clip"][0] if by_table["clip"] else None
        for source_rows in (t3_rows, mesh_t3):
            if source_rows:
                title = scorer_title((source_rows[0].get("source"), None, None)).split(";")[0]
                parts += [f"## CLIP score (mean cosine over the CLIP views; {title})", "",
                          md_table(*clip_table(method_rows(source_rows), source_rows, clip_ref)), ""]
        parts += ["## T3Bench: intervals and paired comparisons", "",
                  *uncertainty_section(t3_rows, categories_of(t3_rows), T3BENCH_STATS, baseline), ""]
    if trows:
        parts += ["## ToyBench (ToyWorld judge on 16 views per run)", "",
                  "Means over the scored runs; n = scored/planned runs (ground truth: prompts). Alignment, consistency "
                  "and Janus rate in % (higher alignment and consistency and lower Janus are better); quality is the "
                  "colour-area error, lower is better (1 = as far off as an empty view). The last row is the ToyWorld renderer's own picture of each "
                  "caption from the same cameras: the protocol's ceiling.",
                  "", md_table(*toybench_table(trows)), ""]
        toy_rows = [r for r in rows if is_toybench_row(r)]
        cats = toybench_categories(toy_rows)
        parts += ["### ToyBench: intervals and paired comparisons", "",
                  *uncertainty_section(toy_rows, cats, TOYBENCH_STATS, baseline, toybench_category_title), ""]
        parts += ["In words:", "", *(f"- {s}" for s in comparison_sentences(
            toy_rows, cats, TOYBENCH_STATS, baseline, toybench_category_title)), ""]
        checks = control_check(trows, [("alignment", False), ("consistency", False), ("janus", True), ("quality", True)],
                               [*cats, "all"], toybench_category_title)
        parts += [*(f"- {c}" for c in checks), ""] if checks else \
            ["No control rows: these scores predate the controls (ToyBench metric version 1).", ""]
        parts += layout_section(toy_rows, cats, toybench_category_title)
        parts += size_section(toy_rows, cats, toybench_category_title)
    parts += ["## Figures", ""]
    if t3_rows:
        parts.append("![T3Bench by category](figures/t3bench_by_category.png)" if chart_note is None
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
    parts += settings_section(settings)
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------


def write_scores(rows: list[dict], path: Path) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    atomic_write(path, lambda p: df.to_parquet(p, index=False))


def scores_without_folders(scores_file: Path, rows: list[dict]) -> list[dict]:
    """The rows of an existing scores.parquet that hold scores while the same runs, collected now,
    have no folder: what a report from the run folders would replace with "missing" (a committed
    report rebuilt on a clone without results/runs/)."""
    if not scores_file.is_file():
        return []
    now = {(r.get("label"), r.get("run_id"), r.get("source", "gaussians")): r.get("status") for r in rows}
    return [r for r in read_scores(scores_file) if r.get("status") in (SCORED, PARTIAL)
            and now.get((r.get("label"), r.get("run_id"), r.get("source", "gaussians")), MISSING) == MISSING]


def build_report(job_name: str, runs: Iterable[Any], results_dir: str | Path,
                 reference_dir: Path = REFERENCE_DIR, baseline: str = DEFAULT_BASELINE,
                 rows: Optional[list[dict]] = None, notice: Optional[str] = None,
                 replace_scores: bool = False) -> dict:
    """Collect every run (RunSpecs of the job's plan, or run directories) and write the report.

    `rows`: the per-run rows already collected (a committed scores.parquet, `read_scores`): the
    report is rebuilt from them, and scores.parquet is left as it is. `baseline`: the label (or
    method) every other method is paired against in the uncertainty sections. `notice`: a line
    quoted under the title (the demo says what it is). A report from the run folders never
    replaces scores whose run folders are not here (UserError naming --from-scores) unless
    `replace_scores`.
    Returns {problems, scores, report, html, ranked, prompt_pages: [paths], chart (None when not
    drawn), grids: [paths],
    toybench (toybench.parquet, None without ToyBench runs), toybench_grids: [paths]}.
    """
    results = Path(results_dir)
    out = results / job_name
    if rows is None:
        runs = list(runs)
        if not runs:
            raise UserError(f"job {job_name!r} plans no runs: nothing to report")
        rows = collect_rows(runs, results)
        lost = [] if replace_scores else scores_without_folders(out / "scores.parquet", rows)
        if lost:
            raise UserError(
                f"{out / 'scores.parquet'} holds the scores of {len(lost)} run(s) whose folders are not under "
                f"{results / 'runs'} (e.g. {lost[0].get('label')} / {lost[0].get('run_id')}): a report from the run "
                f"folders would replace them with 'missing'. Rebuild the report from those scores: python -m harness "
                f"report {job_name} --results {results} --from-scores; or replace them anyway: --replace-scores")
        # the exported-mesh path (metrics_mesh.json), reported apart when any run was scored that way
        mesh_rows = [r for r in collect_rows(runs, results, "mesh") if r["status"] not in ("unscored",)
                     and any(r.get(k) is not None for k in ("quality", "alignment", "clip"))]
        write_scores(rows + mesh_rows, out / "scores.parquet")
    else:  # rebuilt from a scores.parquet: its mesh rows carry source "mesh"
        # pictures of runs whose folders are here are drawn; the others are left out, not an error
        rows = [{k: (None if k.endswith("_png") and v and not Path(str(v)).is_file() else v) for k, v in r.items()}
                for r in rows]
        mesh_rows = [r for r in rows if r.get("source") == "mesh"]
        rows = [r for r in rows if r.get("source") != "mesh"]
    _refuse_pooled_versions(rows)
    refs = load_references(reference_dir)
    t3_rows = [r for r in rows if is_t3bench_row(r)]
    chart = out / "figures" / "t3bench_by_category.png"
    chart_note = bar_chart(method_rows(t3_rows), chart) if t3_rows else "no T3Bench runs"
    labels = list(dict.fromkeys(r["label"] for r in rows))
    # rebuilt from a scores file without the run folders: no pictures to draw (say so, draw none)
    pictures = any(Path(r[k]).is_file() for r in rows for k in ("views_png", "toybench_views_png") if r.get(k))
    grids = prompt_grids(rows, labels, out / "grids") if pictures else []
    toy = [r for r in rows if is_toybench_row(r)]
    trows = toybench_rows(rows)
    toy_grids = toybench_grids(toy, list(dict.fromkeys(r["label"] for r in toy)), out / "grids") if toy and pictures else []
    toy_table = None
    if trows:
        toy_table = out / "toybench.parquet"
        write_scores(toybench_frame_rows(trows), toy_table)
    text = render_markdown(job_name, rows, refs, chart_note, grids, toy_grids, baseline, notice, mesh_rows)
    atomic_write_text(out / "report.md", text)
    from harness.browser import build_browser  # the HTML side: report.html, ranked.html, prompts/

    browser = build_browser(out, job_name, rows, refs, text, grids, toy_grids)
    return {"problems": [r["problems"] for r in rows if r.get("problems")],  # unreadable files, per run
            "scores": out / "scores.parquet", "report": out / "report.md", "html": browser["index"],
            "ranked": browser["ranked"], "prompt_pages": browser["pages"],
            "chart": None if chart_note else chart, "grids": [out / "grids" / g["file"] for g in grids],
            "toybench": toy_table, "toybench_grids": [out / "grids" / g["file"] for g in toy_grids]}


def read_scores(path: Path) -> list[dict]:
    """The per-run rows of a scores.parquet (NaN -> None, as collect_rows leaves missing numbers)."""
    import pandas as pd

    if not Path(path).is_file():
        raise UserError(f"{path}: no such scores file (written by a report built from the runs)")
    df = pd.read_parquet(path)
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in df.to_dict("records")]


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n")[0])
    p.add_argument("--job", required=True, help="job name (with a saved plan in RESULTS/<job>/), or a job file")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--baseline", default=DEFAULT_BASELINE,
                   help=f"label or method every other is paired against (default {DEFAULT_BASELINE})")
    p.add_argument("--from-scores", nargs="?", const="", default=None, metavar="JOB[,JOB...]",
                   help="rebuild from RESULTS/<job>/scores.parquet instead of the run folders (committed results); "
                        "with job names, from their scores together (e.g. two seeds run as two jobs)")
    p.add_argument("--replace-scores", action="store_true",
                   help="let a report from the run folders replace scores whose run folders are not here")
    args = p.parse_args(argv)
    try:
        if args.from_scores is not None:
            name = Path(args.job).stem if Path(args.job).suffix in (".yaml", ".yml") else args.job
            sources = [j for j in args.from_scores.split(",") if j] or [name]
            rows = [r for j in sources for r in read_scores(args.results / j / "scores.parquet")]
            paths = build_report(name, [], args.results, baseline=args.baseline, rows=rows)
        else:
            name, specs = resolve_job(args.job, args.results)
            paths = build_report(name, specs, args.results, baseline=args.baseline, replace_scores=args.replace_scores)
    except UserError as e:
        return report_error(e)
    except OSError as e:  # RESULTS/<job>/ cannot be written: say where, no traceback
        print(f"error: cannot write the report of {args.job} in {args.results}: {e}", file=sys.stderr)
        return 2
    for problem in paths["problems"]:  # the report went on without these files
        print(f"warning: {problem}", file=sys.stderr)
    print(f"report: {paths['report']}\nscores: {paths['scores']}\nhtml:   {paths['html']} "
          f"(+ ranked.html, {len(paths['prompt_pages'])} prompt pages; opens from disk)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
