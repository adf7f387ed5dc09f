"""ToyBench in the report, over synthetic run directories with metrics.json toybench records.

Known per-run numbers in, the means, counts, ground-truth row, sentence and pictures out; a
ToyBench-only job has no T3Bench tables and does not list the T3Bench stages as gaps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from harness.plan import RunSpec
from harness.report import build_report
from harness.report_tables import TOYBENCH_GROUND_TRUTH

CATS = ("one-object", "two-objects")
PROMPTS = {"one-object": [(0, "a red cube"), (6, "a blue sphere")],
           "two-objects": [(5, "a yellow cube and a blue sphere"), (19, "a red torus and a blue cone")]}
KEYS = ("alignment", "consistency", "janus", "quality")


def _spec(method: str, cat: str, i: int, seed: int = 0) -> RunSpec:
    index, prompt = PROMPTS[cat][i]
    return RunSpec(method, method, cat, index, prompt, seed, "toy", {}, f"{cat}-{i}-{method}-s{seed}")


def _reference(cat: str, i: int) -> dict:
    # depends on the prompt only (as the real ground truth does), different per prompt
    align = 1.0 if cat == "one-object" else (0.9375 if i == 0 else 0.875)
    return {"alignment": align, "colour_set": 1.0, "shape_set": 1.0, "count": 1.0, "consistency": align,
            "janus": 0.0, "modal_set": PROMPTS[cat][i][1][2:].replace(" and a ", " + "), "modal_is_caption": True,
            "quality": 0.005 + 0.001 * i}


def _write_run(results: Path, spec: RunSpec, nums: dict | None, cat: str, i: int, views: bool = True) -> None:
    d = spec.run_dir(results)
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"method": spec.method, "prompt": spec.prompt, "seed": spec.seed,
                                                   "models": "toy"}))
    (d / "status.json").write_text(json.dumps({"state": "done", "method": spec.method, "prompt": spec.prompt,
                                               "seed": spec.seed, "wall_time_s": 3.0}))
    Image.fromarray(np.full((64, 128, 3), 120, np.uint8)).save(d / "views.png")
    if views:
        Image.fromarray(np.full((64, 256, 3), 90, np.uint8)).save(d / "toybench_views.png")
    if nums is None:
        return
    rec = {"status": "done", "score": nums["alignment"], "colour_set": nums["alignment"], "shape_set": 1.0,
           "count": 1.0, "modal_set": "red cube", "modal_is_caption": nums["alignment"] > 0.5,
           "view_sets": ["red cube"] * 16, "reference": _reference(cat, i), "num_views": 16,
           "model": {"judge": "/x/judge", "judge_architecture": "toyworld-judge-v1"},
           "model_set": "toybench",
           "settings": {"num_azimuths": 8, "start_azimuth_deg": 22.5, "elevations_deg": [15.0, 45.0], "distance": 3.0,
                        "fov_y_deg": 42.0, "size": 32, "background": [0.35, 0.35, 0.35], "janus_min_fraction": 0.25,
                        "quality_timesteps": [200, 400, 600], "quality_draws": 2, "quality_seed": 0},
           "timing": {"render_s": 0.1, "score_s": 0.5}, **nums}
    (d / "metrics.json").write_text(json.dumps({"format": 1, "normalization": None, "toybench": rec}))


# per method, category, prompt: (alignment, consistency, janus, quality)
SDS = {"one-object": [(0.5, 0.75, 0.0, 0.05), (0.25, 0.5, 1.0, 0.07)],
       "two-objects": [(0.125, 0.5, 1.0, 0.08), (0.0, 0.625, 0.0, 0.09)]}
IPA = {"one-object": [(0.25, 0.875, 0.0, 0.04), (0.25, 0.75, 0.0, 0.06)],  # worse than sds on one object
       "two-objects": [(0.5, 0.75, 0.0, 0.06), None]}  # the second run is missing


@pytest.fixture
def toyjob(tmp_path):
    results = tmp_path / "results"
    specs = []
    for method, table in (("sds", SDS), ("anchords-ipa", IPA)):
        for cat in CATS:
            for i, vals in enumerate(table[cat]):
                spec = _spec(method, cat, i)
                if vals is not None:
                    _write_run(results, spec, dict(zip(KEYS, vals)), cat, i)
                specs.append(spec)
    return results, specs


def _pct(v: float) -> str:
    return f"{v * 100:.1f}"


def test_toybench_table_means_counts_reference(toyjob):
    results, specs = toyjob
    paths = build_report("toy", specs, results)
    text = paths["report"].read_text()

    # per-run columns
    df = pd.read_parquet(paths["scores"])
    assert len(df) == 8 and set(df["benchmark"]) == {"toybench"}
    assert {"toybench", "toybench_alignment", "toybench_consistency", "toybench_janus", "toybench_quality",
            "toybench_modal_set", "toybench_ref_alignment", "toybench_ref_quality", "toybench_views_png"} <= set(df.columns)
    sds = df[df["method"] == "sds"].set_index(["category", "prompt_index"])
    assert sds.loc[("one-object", 6), "toybench_janus"] == 1.0 and sds.loc[("two-objects", 19), "toybench_quality"] == 0.09
    assert sds.loc[("two-objects", 5), "toybench_ref_alignment"] == 0.9375
    status = df.set_index(["method", "category", "prompt_index"])["status"]
    assert status[("anchords-ipa", "two-objects", 19)] == "missing"
    assert (status.drop(("anchords-ipa", "two-objects", 19)) == "scored").all()  # T3Bench stages not expected

    # the aggregated table, long form
    tb = pd.read_parquet(paths["toybench"]).set_index(["label", "category"])
    for key, k in zip(KEYS, range(4)):
        assert tb.loc[("sds", "one-object"), key] == pytest.approx(np.mean([v[k] for v in SDS["one-object"]]))
        assert tb.loc[("sds", "all"), key] == pytest.approx(np.mean([v[k] for c in CATS for v in SDS[c]]))
        ipa_all = [v[k] for c in CATS for v in IPA[c] if v is not None]
        assert tb.loc[("anchords-ipa", "all"), key] == pytest.approx(np.mean(ipa_all))
    assert tuple(tb.loc[("anchords-ipa", "two-objects"), ["n", "expected"]]) == (1, 2)
    assert tuple(tb.loc[("anchords-ipa", "all"), ["n", "expected"]]) == (3, 4)
    # ground truth: each prompt once (not once per method), over every prompt with a reference
    gt = tb.loc[(TOYBENCH_GROUND_TRUTH, "two-objects")]
    assert gt["alignment"] == pytest.approx((0.9375 + 0.875) / 2) and (gt["n"], gt["expected"]) == (2, 2)
    assert tb.loc[(TOYBENCH_GROUND_TRUTH, "all"), "quality"] == pytest.approx(np.mean([0.005, 0.006, 0.005, 0.006]))
    assert tuple(tb.loc[(TOYBENCH_GROUND_TRUTH, "all"), ["n", "expected"]]) == (4, 4)

    # markdown
    assert "## ToyBench" in text and "quality (colour-area error, lower better)" in text
    assert "one object: alignment %" in text and "two objects: Janus rate %" in text and "all: n" in text
    sds_line = next(ln for ln in text.splitlines() if ln.startswith("| **sds**"))
    cells = [c.strip() for c in sds_line.strip("|").split("|")]
    one = SDS["one-object"]
    assert cells[2:7] == [_pct(np.mean([v[0] for v in one])), _pct(np.mean([v[1] for v in one])),
                          _pct(np.mean([v[2] for v in one])), f"{np.mean([v[3] for v in one]):.3f}", "2/2"]
    ipa_line = next(ln for ln in text.splitlines() if ln.startswith("| **anchords-ipa**"))
    assert [c.strip() for c in ipa_line.strip("|").split("|")][7:12] == ["50.0", "75.0", "0.0", "0.060", "1/2"]
    gt_line = next(ln for ln in text.splitlines() if ln.startswith(f"| {TOYBENCH_GROUND_TRUTH}"))
    assert "| 100.0 |" in gt_line and _pct((0.9375 + 0.875) / 2) in gt_line
    assert text.index("| **anchords-ipa**") < text.index(f"| {TOYBENCH_GROUND_TRUTH}")  # ground truth last

    # intervals and paired comparisons, never a bare point comparison
    stats_part = text.split("### ToyBench: intervals and paired comparisons")[1].split("## Figures")[0]
    assert "| one object | **sds** | 2 x 1 | 37.5 [25.0, 50.0] |" in stats_part
    assert "| two objects | **anchords-ipa** | 1 x 1 | 50.0 [no interval: 1 prompt] |" in stats_part
    assert "Paired by prompt against **sds**" in stats_part and "Bonferroni" in stats_part
    assert "- one object, anchords-ipa vs sds: alignment % cannot tell (-12.5 [-25.0, +0.0], 2 prompts in common" \
        in stats_part
    assert "beats" not in text and "best" not in stats_part

    # no T3Bench noise: no T3Bench tables, references, or "quality: not scored" gaps
    for absent in ("## T3Bench", "## Ablation", "## CLIP", "## Published reference rows", "quality: not scored",
                   "We render the Gaussians directly", "No bar chart"):
        assert absent not in text
    assert paths["chart"] is None
    assert "PARTIAL RESULTS" in text.split("## ToyBench")[0]
    gaps = text.split("## Gaps")[1].split("## Protocol")[0]
    assert "no run directory" in gaps and "sds" not in {ln.split("|")[1].strip() for ln in gaps.splitlines()
                                                         if ln.startswith("| ")}
    assert "`toyworld-judge-v1`" in text and "at least 0.25 of the views" in text

    # pictures: a ToyBench grid per prompt, one row per method and the rendered ground truth
    assert len(paths["toybench_grids"]) == 4 and all(p.name.startswith("toybench-") for p in paths["toybench_grids"])
    grid = Image.open(next(p for p in paths["toybench_grids"] if "two-objects-019" in p.name))
    assert grid.size == (210 + 512, 16 + 3 * 128)
    px = np.asarray(grid)
    assert (px[16 + 10, 300] == 90).all()  # sds's views (scaled up)
    assert (px[16 + 128 + 10, 300] == 96).all()  # anchords-ipa: missing -> grey placeholder
    assert len(set(map(tuple, px[16 + 256:, 210:].reshape(-1, 3)))) > 10  # the ground truth, drawn
    assert paths["html"].read_text().count("<img") == 4 + 4  # views grids + ToyBench grids


def test_t3bench_and_toybench_in_one_job(toyjob):
    """A mixed job: each benchmark's tables hold only its own runs."""
    import test_report as t3

    results, specs = toyjob
    t3specs = []
    for cat in ("single", "surr", "multi"):
        spec = t3._spec("sds", cat, 0)
        t3._write_run(results, spec, quality=50.0, rating=3, clip=0.3)
        t3specs.append(spec)
    text = build_report("mixed", specs + t3specs, results)["report"].read_text()
    t3_table = text.split("## T3Bench")[1].split("###")[0]
    assert "one-object" not in t3_table and "| **sds** | ours (sd15) | 50.0 (n=3/3) |" in t3_table
    assert "## ToyBench" in text and "| **sds** | ours (toy) |" in text
    assert "### ToyBench" in text.split("## Protocol")[1]


def test_run_dirs_without_a_plan_get_toybench_indices(toyjob):
    results, specs = toyjob
    dirs = sorted(p.parent for p in (results / "runs").glob("sds/*/*/status.json"))
    df = pd.read_parquet(build_report("dirs", dirs, results)["scores"])
    assert sorted(df["prompt_index"]) == [0, 5, 6, 19] and set(df["benchmark"]) == {"toybench"}
    assert set(df["status"]) == {"scored"}


def test_another_baseline_and_a_missing_one(toyjob):
    results, specs = toyjob
    text = build_report("toy", specs, results, baseline="anchords-ipa")["report"].read_text()
    assert "Paired by prompt against **anchords-ipa**" in text and "sds vs anchords-ipa" in text
    text = build_report("toy", specs, results, baseline="vsd")["report"].read_text()
    assert "No paired comparisons: no `vsd` runs in this job" in text


def test_views_file_name_matches_the_metric():
    from harness.report_collect import TOYBENCH_VIEWS_FILE, TOYBENCH_VIEWS_LARGE_FILE
    from metrics.evaluate import TOYBENCH_VIEWS, TOYBENCH_VIEWS_LARGE

    assert (TOYBENCH_VIEWS_FILE, TOYBENCH_VIEWS_LARGE_FILE) == (TOYBENCH_VIEWS, TOYBENCH_VIEWS_LARGE)


def _add_controls(results: Path, empty_consistency: float) -> None:
    """Metric-version-2 records: controls beside each run (empty's consistency as given)."""
    for path in results.glob("runs/*/*/*/metrics.json"):
        data = json.loads(path.read_text())
        rec = data["toybench"]
        rec["settings"]["metric_version"] = 2
        nums = lambda a, c, j, q: {"alignment": a, "consistency": c, "janus": j, "quality": q}  # noqa: E731
        rec["controls"] = {"empty": nums(0.0, empty_consistency, None, 1.0), "ball": nums(0.0, 0.0, None, 1.0),
                           "noise": nums(0.0, 0.0, None, 1.0), "other caption": nums(0.0, 0.0, None, 1.0),
                           "fitted truth": nums(1.0, 1.0, 0.0, 0.05)}
        path.write_text(json.dumps(data))


def test_control_rows_and_their_order_check(toyjob):
    results, specs = toyjob
    _add_controls(results, empty_consistency=0.0)
    paths = build_report("toy", specs, results)
    text = paths["report"].read_text()
    assert "| control: fitted truth | control (same cameras) | 100.0 | 100.0 | 0.0 | 0.050 | 2/2 |" in text
    assert "| control: empty | control (same cameras) | 0.0 | 0.0 | — | 1.000 | 2/2 |" in text
    assert "Control order, all (negatives at the bottom, fitted truth at the top): alignment holds, " \
           "consistency holds, janus holds, quality holds." in text
    assert "**Metric version 2.**" in text
    tb = pd.read_parquet(paths["toybench"])
    assert set(tb[tb["source"] == "control"]["label"]) == {"control: empty", "control: ball", "control: noise",
                                                             "control: other caption", "control: fitted truth"}
    # a metric that lets a blank win consistency is caught
    _add_controls(results, empty_consistency=1.0)
    text = build_report("toy", specs, results)["report"].read_text()
    assert "alignment holds, consistency FAILS, janus holds" in text


def test_version_1_scores_say_so(toyjob):
    results, specs = toyjob
    text = build_report("toy", specs, results)["report"].read_text()
    assert "**Metric version 1**" in text and "No control rows: these scores predate the controls" in text


def test_grid_labels_are_drawable_by_the_default_font():
    """PIL's default font has ASCII only: a dash for 'no Janus value' was drawn as a box."""
    from harness.report_figures import _toy_label

    scored = {"toybench": 1.0, "toybench_alignment": 0.5, "toybench_consistency": 0.5, "toybench_janus": None,
              "toybench_modal_set": None}
    lines = _toy_label(scored) + _toy_label({**scored, "toybench_alignment": None, "toybench_janus": 1.0})
    assert all(line.isascii() for line in lines), lines
    assert "janus n/a (never shows the caption)" in lines and "modal: none" in lines
    assert all(len(line) <= 35 for line in lines)  # the label column's width in characters


def test_grids_show_the_large_views_where_runs_have_them_and_the_truth_at_their_size(toyjob):
    results, specs = toyjob
    for spec in specs:
        d = spec.run_dir(results)
        if spec.method == "sds" and d.is_dir():
            Image.fromarray(np.full((2 * 96, 8 * 96, 3), 150, np.uint8)).save(d / "toybench_views_large.png")
    paths = build_report("toy", specs, results)
    grid = Image.open(next(p for p in paths["toybench_grids"] if "two-objects-019" in p.name))
    assert grid.size == (210 + 768, 16 + 3 * 192)  # rows as tall as the large views
    px = np.asarray(grid)
    assert (px[16 + 10, 300] == 150).all()  # sds: its large views, not the judged ones (90)
    truth = px[16 + 2 * 192:, 210:]
    assert len(set(map(tuple, truth.reshape(-1, 3)))) > 10
    # drawn at the large views' 96 px: it fills its row (the 32 px truth, scaled by 2, would end at 128)
    assert (truth[188, :768] == 89).mean() > 0.5  # the world's grey background (0.35), not the grid's white
    assert not (truth[:, :768:96] == 255).all(axis=-1).any()


def test_the_report_names_the_prior_version_each_run_was_made_with(toyjob):
    results, specs = toyjob
    text = build_report("toy", specs, results)["report"].read_text()
    assert "generation model sets: `toy` (`toy` with no version: the prior at step 7,286)" in text
    status_file = specs[0].run_dir(results) / "status.json"
    status = json.loads(status_file.read_text())
    status_file.write_text(json.dumps({**status, "models_version": "prior-step-20000"}))
    from generators.errors import UserError

    with pytest.raises(UserError, match=r"runs of 'sds' were made with different model set versions \(toy, toy@prior-step-20000\)"):
        build_report("toy", specs, results)  # one method's cells would pool two priors
    for spec in specs:  # every run of the new prior: one version per method, named in the report
        f = spec.run_dir(results) / "status.json"
        if f.is_file():
            f.write_text(json.dumps({**json.loads(f.read_text()), "models_version": "prior-step-20000"}))
    text = build_report("toy", specs, results)["report"].read_text()
    assert "generation model sets: `toy@prior-step-20000`\n" in text  # no note on the unversioned prior: no run of it


def test_a_report_from_run_folders_never_replaces_scores_whose_folders_are_gone(toyjob):
    """A committed report rebuilt on a clone without results/runs/ would have turned every scored
    run into "missing": refused, with the command that rebuilds from the scores instead."""
    import shutil

    from generators.errors import UserError

    results, specs = toyjob
    paths = build_report("toy", specs, results)
    before = paths["scores"].read_bytes()
    shutil.rmtree(specs[0].run_dir(results))
    with pytest.raises(UserError, match=r"holds the scores of 1 run\(s\).*--from-scores.*--replace-scores"):
        build_report("toy", specs, results)
    assert paths["scores"].read_bytes() == before  # nothing written
    from harness.report import main as report_main

    assert report_main(["--job", "toy", "--results", str(results), "--from-scores"]) == 0
    assert paths["scores"].read_bytes() == before  # rebuilt from the scores, which stay as they are
    build_report("toy", specs, results, replace_scores=True)
    df = pd.read_parquet(paths["scores"]).set_index("run_id")
    assert df.loc[specs[0].run_id, "status"] == "missing"


def test_the_layout_diagnostic_reads_each_two_object_runs_gaussians(toyjob):
    """Side by side with the first-named object on the left, stacked, and swapped: the report's
    layout table counts each per method; one-object runs and runs without Gaussians are not read."""
    from generators.gaussians.ply import save_ply
    from tests.test_toybench_layout import _two_blobs

    results, specs = toyjob
    two = {(s.method, s.prompt): s for s in specs if s.category == "two-objects"}
    save_ply(_two_blobs((0, -0.6, 0), (0, 0.6, 0), "yellow", "blue"),  # as captioned
             two[("sds", "a yellow cube and a blue sphere")].run_dir(results) / "gaussians.ply")
    save_ply(_two_blobs((0, -0.1, -0.5), (0, 0.1, 0.5), "red", "blue"),  # stacked
             two[("sds", "a red torus and a blue cone")].run_dir(results) / "gaussians.ply")
    save_ply(_two_blobs((0, 0.6, 0), (0, -0.6, 0), "yellow", "blue"),  # swapped
             two[("anchords-ipa", "a yellow cube and a blue sphere")].run_dir(results) / "gaussians.ply")
    paths = build_report("toy", specs, results)
    text = paths["report"].read_text()
    section = text.split("### ToyBench: layout")[1].split("\n#")[0]
    assert "| two objects | **sds** | 2 | 50.0 | 100.0 |" in section
    assert "| two objects | **anchords-ipa** | 1 | 0.0 | 0.0 |" in section
    assert "one object" not in section
    html = (paths["report"].parent / "report.html").read_text()  # the browser shows the same table
    table = html.split("ToyBench: layout (a diagnostic, not a score)</h2>")[1].split("</table>")[0]
    assert '<td data-sort="50.0">50.0</td>' in table and "<strong>anchords-ipa</strong>" in table


def test_the_size_diagnostic_divides_each_runs_object_area_by_the_truths(toyjob):
    """Object area over the truth's, per method and category; runs at >= 1.3x counted with their
    alignment; runs whose records lack the areas (scores from before) are left out."""
    results, specs = toyjob
    areas = {("sds", "a red cube"): 0.30, ("sds", "a blue sphere"): 0.10,  # 1.5x (large), 0.5x
             ("anchords-ipa", "a red cube"): 0.22}  # 1.1x; anchords-ipa's blue sphere has no area: left out
    for spec in specs:
        if (spec.method, spec.prompt) not in areas:
            continue
        path = spec.run_dir(results) / "metrics.json"
        data = json.loads(path.read_text())
        data["toybench"]["object_area"] = areas[(spec.method, spec.prompt)]
        data["toybench"]["reference"]["object_area"] = 0.20
        path.write_text(json.dumps(data))
    text = build_report("toy", specs, results)["report"].read_text()
    section = text.split("### ToyBench: object size")[1].split("\n#")[0]
    assert "| one object | **sds** | 2 | 1.00 | 50.0 | 50.0 |" in section  # mean of 1.5 and 0.5; the large run aligns 0.5
    assert "| one object | **anchords-ipa** | 1 | 1.10 | 0.0 | - |" in section
    assert "two objects" not in section  # no two-object run has the areas
    html = (results / "toy" / "report.html").read_text()
    assert "ToyBench: object size (a diagnostic, not a score)</h2>" in html
