"""Report over synthetic run directories: published rows, our rows with the right means and counts, gaps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from harness.plan import RunSpec
from harness.report import build_report, load_references, main

CATS = ("single", "surr", "multi")
PROMPTS = {c: [f"a {c} thing {i}" for i in range(2)] for c in CATS}


def _spec(method: str, cat: str, i: int) -> RunSpec:
    return RunSpec(method, method, cat, i, PROMPTS[cat][i], 0, "sd15", {}, f"{cat}-{i}-{method}")


def _write_run(results: Path, spec: RunSpec, state: str = "done", quality=None, rating=None, clip=None,
               metrics: bool = True, views: bool = True, reason: str | None = None) -> None:
    d = spec.run_dir(results)
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"method": spec.method, "prompt": spec.prompt, "seed": 0, "models": "sd15"}))
    status = {"state": state, "method": spec.method, "prompt": spec.prompt, "seed": 0, "wall_time_s": 12.5}
    if reason:
        status["reason"] = reason
    (d / "status.json").write_text(json.dumps(status))
    if views:
        Image.fromarray(np.full((8, 16, 3), 200, np.uint8)).save(d / "views.png")
    if state == "done" and metrics:
        align = {"status": "done", "rating": rating, "score": None if rating is None else (rating - 1) / 4 * 100,
                 "judge": {"name": "scripted-judge", "kind": "openai"}, "captioner": {"id": "tiny-captioner"}}
        if rating is None:
            align["missing_reason"] = "rating: no usable 1-5 rating in 3 replies"
        (d / "metrics.json").write_text(json.dumps({
            "quality": {"status": "done", "score": quality, "model": {"id": "THUDM/ImageReward", "revision": "abc"},
                        "model_set": "tiny"},
            "alignment": align,
            "clip": {"status": "done", "score": clip, "model": {"model": "ViT-L-14", "pretrained": "openai"}},
        }))


# Known inputs: (quality, rating, clip) per category and prompt.
SDS = {"single": [(50.0, 3, 0.30), (60.0, 5, 0.32)], "surr": [(40.0, 2, 0.25), (44.0, 2, 0.27)],
       "multi": [(30.0, 1, 0.20), (36.0, 3, 0.22)]}
IPA = {c: [(q + 10, min(5, r + 1), s + 0.05) for q, r, s in v] for c, v in SDS.items()}


def _expected_avg(values) -> float:
    q = np.mean([v[0] for v in values])
    a = (np.mean([v[1] for v in values]) - 1) / 4 * 100
    return (q + a) / 2


@pytest.fixture
def job(tmp_path):
    results = tmp_path / "results"
    specs = []
    for method, table in (("sds", SDS), ("anchords-ipa-finetune", IPA)):
        for cat in CATS:
            for i, (q, r, s) in enumerate(table[cat]):
                spec = _spec(method, cat, i)
                _write_run(results, spec, quality=q, rating=r, clip=s)
                specs.append(spec)
    cn = "anchords-cn-filter"
    gaps = {
        ("single", 0): dict(state="failed", reason="NonFiniteError: loss is NaN at step 7", views=False),
        ("single", 1): None,  # missing: never ran
        ("surr", 0): dict(metrics=False),  # finished, unscored
        ("surr", 1): dict(quality=45.0, rating=4, clip=0.3),
        ("multi", 0): dict(quality=35.0, rating=None, clip=0.2),  # judge gave no usable rating
        ("multi", 1): dict(quality=33.0, rating=3, clip=0.21),
    }
    for (cat, i), kw in gaps.items():
        spec = _spec(cn, cat, i)
        if kw is not None:
            _write_run(results, spec, **kw)
        specs.append(spec)
    return results, specs


def test_report_tables_counts_and_gaps(job):
    results, specs = job
    paths = build_report("paper-table1", specs, results)
    text = paths["report"].read_text()

    # scores.parquet: one row per planned run, missing ones included
    df = pd.read_parquet(paths["scores"])
    assert len(df) == len(specs) == 18
    assert {"method", "category", "prompt", "prompt_index", "seed", "quality", "alignment", "alignment_rating", "clip",
            "clip_model", "clip_pretrained", "judge", "wall_time_s", "status", "models"} <= set(df.columns)
    cn = df[df["method"] == "anchords-cn-filter"].set_index(["category", "prompt_index"])["status"]
    assert cn[("single", 0)] == "failed" and cn[("single", 1)] == "missing"
    assert cn[("surr", 0)] == "unscored" and cn[("multi", 0)] == "partial" and cn[("multi", 1)] == "scored"

    # published rows, clearly marked, each in the table of its own metric
    quality_part = text.split("## T3Bench quality only")[1].split("## T3Bench (Quality + Alignment) / 2")[0]
    mean_part = text.split("## T3Bench (Quality + Alignment) / 2")[1].split("### Alignment only")[0]
    for label, value in [("SDS (GaussianDreamer)", "29.7"), ("SDS (DreamFusion)", "20.5")]:
        line = next(ln for ln in quality_part.splitlines() if label in ln and "published" in ln)
        assert value in line and label not in mean_part
    for label, value in [("ProlificDreamer", "43.3"), ("GaussianDreamer (self-reported)", "45.7")]:
        line = next(ln for ln in mean_part.splitlines() if label in ln and "published" in ln)
        assert value in line and label not in quality_part
    assert "AnchorDS (IP-Adapter) + Filter" in next(ln for ln in text.split("## Ablation")[1].splitlines()
                                                    if "32.8" in ln and "published" in ln)
    assert "judge `scripted-judge`, captioner `tiny-captioner`" in text.split("## T3Bench quality only")[1].split("\n")[0]

    # our rows: means from the known inputs, with counts, on the metric of the table they are in
    def q_all(t):
        return np.mean([np.mean([v[0] for v in t[c]]) for c in CATS])

    sds_q = next(ln for ln in quality_part.splitlines() if ln.startswith("| **sds**") and "ours" in ln)
    assert f"{q_all(SDS):.1f} (n=6/6)" in sds_q and f"{np.mean([50.0, 60.0]):.1f} (n=2/2)" in sds_q
    sds_all = np.mean([_expected_avg(SDS[c]) for c in CATS])
    sds_line = next(ln for ln in mean_part.splitlines() if ln.startswith("| **sds**") and "ours" in ln)
    assert f"{sds_all:.1f} (n=6/6)" in sds_line
    assert f"{_expected_avg(SDS['single']):.1f} (n=2/2)" in sds_line
    assert f"{_expected_avg(SDS['multi']):.1f} (n=2/2)" in sds_line
    # ablation on the ablation's metric (quality): gain of the finetune row over SDS
    abl = next(ln for ln in text.splitlines() if "**AnchorDS (IP-Adapter) + Finetune**" in ln)
    assert f"{q_all(IPA):.1f} (n=6/6)" in abl and f"{q_all(IPA) - q_all(SDS):+.1f}" in abl
    assert "not in this job" in text  # the ablation's anchords-ipa row has no run here

    # the partial method: per-cell counts, no All (a category has no score at all)
    cn_line = next(ln for ln in mean_part.splitlines() if ln.startswith("| **anchords-cn-filter**") and "ours" in ln)
    assert "— (n=0/2)" in cn_line  # single: failed + missing
    assert f"{(45.0 + 75.0) / 2:.1f} (n=1/2)" in cn_line  # surr: one scored of two
    # multi: the one run with both numbers (33.0, rating 3): the mean and its n describe the same run
    assert f"{(33.0 + 50.0) / 2:.1f} (n=1/2)" in cn_line
    assert cn_line.split("|")[3].strip().startswith("—")  # All is not computed from a partial set
    cn_q = next(ln for ln in quality_part.splitlines() if ln.startswith("| **anchords-cn-filter**"))
    assert f"{np.mean([35.0, 33.0]):.1f} (n=2/2)" in cn_q

    # CLIP table
    clip_line = next(ln for ln in text.split("## CLIP")[1].splitlines() if ln.startswith("| **sds**"))
    assert f"{np.mean([v[2] for c in CATS for v in SDS[c]]):.3f} (n=6/6)" in clip_line and "ViT-L-14/openai" in clip_line
    assert "0.369" in text  # published human-study CLIP

    # gaps: prominent partial note and every gap with its reason
    assert "PARTIAL RESULTS" in text.split("## T3Bench")[0]
    gaps = text.split("## Gaps")[1].split("## Published")[0]
    assert "NonFiniteError: loss is NaN at step 7" in gaps
    assert "no run directory" in gaps and "no metrics.json yet" in gaps
    assert "no usable 1-5 rating" in gaps
    assert "sds" not in {ln.split("|")[1].strip() for ln in gaps.splitlines() if ln.startswith("| ")}

    # protocol note and pictures
    assert "TINY MODELS" in text  # the quality stage says it used the tiny metric set
    assert "We render the Gaussians directly" in text and "`THUDM/ImageReward@abc`" in text
    assert "`scripted-judge`" in text
    assert len(paths["grids"]) == 6
    grid = Image.open(paths["grids"][0])
    assert grid.width == 3 * 2 * (grid.height - 18)  # three methods, views 2:1 scaled to the panel height
    assert paths["html"].read_text().count("<img") == 6
    if paths["chart"] is not None:
        assert Image.open(paths["chart"]).width > 100


def test_complete_job_has_no_gaps(job):
    results, specs = job
    done = [s for s in specs if s.method == "sds"]
    text = build_report("sds-only", done, results)["report"].read_text()
    assert "PARTIAL" not in text
    assert "None: every planned run is finished" in text


def test_run_dirs_without_a_plan(job):
    results, specs = job
    dirs = sorted(p.parent for p in (results / "runs").glob("sds/*/*/status.json"))
    df = pd.read_parquet(build_report("dirs", dirs, results)["scores"])
    assert len(df) == 6 and set(df["status"]) == {"scored"}
    assert sorted(df["prompt"]) == sorted(p for c in CATS for p in PROMPTS[c])


def test_reference_files_have_sources():
    refs = load_references()
    assert {r["short"] for r in refs} >= {"anchords-table1", "anchords-ablation", "anchords-human-study",
                                          "t3bench-leaderboard", "gaussiandreamer-self-reported"}
    for ref in refs:
        assert ref["source"] and ref["rows"]
        for row in ref["rows"]:
            if ref["table"] == "t3bench" and None not in (row.get(c) for c in CATS):
                # All = mean of the three categories in every published row (to rounding)
                assert abs(np.mean([row[c] for c in CATS]) - row["all"]) < 0.06, row


def test_cli_unknown_job_is_a_user_error(tmp_path, capsys):
    assert main(["--job", "no-such-job", "--results", str(tmp_path)]) == 2
    assert "no job" in capsys.readouterr().err


def test_t3bench_job_has_no_toybench_section(job):
    results, specs = job
    paths = build_report("paper-table1", specs, results)
    text = paths["report"].read_text()
    assert "ToyBench" not in text and paths["toybench"] is None and paths["toybench_grids"] == []
    assert not (results / "paper-table1" / "toybench.parquet").exists()
    df = pd.read_parquet(paths["scores"])
    assert set(df["benchmark"]) == {"t3bench"} and not any(c.startswith("toybench") for c in df.columns)


def test_runs_of_different_judges_are_never_pooled(tmp_path):
    results = tmp_path / "results"
    specs = []
    for cat in CATS:
        for i, (q, r, c) in enumerate(SDS[cat]):
            spec = _spec("sds", cat, i)
            _write_run(results, spec, quality=q, rating=r, clip=c)
            if i == 1:  # the second prompt of each category was rated by another judge
                m = json.loads((spec.run_dir(results) / "metrics.json").read_text())
                m["alignment"]["judge"] = {"name": "local:qwen", "kind": "local"}
                (spec.run_dir(results) / "metrics.json").write_text(json.dumps(m))
            specs.append(spec)
    text = build_report("mixed", specs, results)["report"].read_text()
    titles = [ln for ln in text.splitlines() if ln.startswith("## T3Bench (Quality + Alignment) / 2")]
    assert len(titles) == 2 and "`scripted-judge`" in titles[0] and "`local:qwen`" in titles[1]
    for title, i in zip(titles, (0, 1)):
        part = text.split(title)[1].split("###")[0]
        line = next(ln for ln in part.splitlines() if ln.startswith("| **sds**"))
        expected = np.mean([_expected_avg([SDS[c][i]]) for c in CATS])
        assert f"{expected:.1f} (n=3/3)" in line  # one judge's runs only, n counts exactly them


def test_a_reference_without_metric_is_refused(tmp_path):
    from generators.errors import UserError

    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"source": "s", "table": "t3bench",
                                                     "rows": [{"label": "A", "all": 1.0}]}))
    with pytest.raises(UserError, match="needs a 'metric'"):
        load_references(tmp_path)


def test_every_t3bench_reference_row_names_its_metric():
    refs = {r["short"]: r for r in load_references()}
    assert refs["anchords-table1"]["metric"] == "quality" and refs["anchords-ablation"]["metric"] == "quality"
    assert refs["t3bench-leaderboard"]["metric"] == "mean"
    assert "evidence" in refs["anchords-table1"]


def _set_cfg(results: Path, spec: RunSpec, cfg: float) -> None:
    f = spec.run_dir(results) / "config.yaml"
    f.write_text(yaml.safe_dump({**yaml.safe_load(f.read_text()), "steps": 400, "guidance": {"guidance_scale": cfg}}))


def test_settings_as_run_show_what_sets_each_label_apart(job):
    """Two labels of one method that differ in CFG: the report names each label's CFG and the
    setting that sets it apart, read from the runs' config.yaml (so a label keeps the meaning its
    runs had, whatever the set's defaults are today); no mixed-settings warning."""
    results, specs = job
    sds = [s for s in specs if s.method == "sds"]
    relabelled = [RunSpec("sds-cfg3" if s.category == "multi" else "sds", *[getattr(s, f) for f in
                  ("method", "category", "index", "prompt", "seed", "models", "overrides", "run_id")]) for s in sds]
    for s in relabelled:
        _set_cfg(results, s, 3.0 if s.label == "sds-cfg3" else 30.0)
    out = build_report("cfgs", relabelled, results)
    text = out["report"].read_text()
    assert "MIXED SETTINGS" not in text
    section = text.split("## Settings as run")[1]
    assert re.search(r"\| sds \| sds \| 4 \| 30\.0 \| `guidance\.guidance_scale` 30\.0 \|", section), section
    assert re.search(r"\| sds-cfg3 \| sds \| 2 \| 3\.0 \| `guidance\.guidance_scale` 3\.0 \|", section), section
    settings = json.loads(pd.read_parquet(out["scores"])["settings"].iloc[0])
    assert "prompt" not in settings and "seed" not in settings and settings["steps"] == "400"


def test_one_label_over_runs_of_two_settings_is_flagged(job):
    """The runs of one label made with two CFGs (e.g. a job run before and after a set's default
    moved): the report says so at the top and names the setting."""
    results, specs = job
    sds = [s for s in specs if s.method == "sds"]
    for i, s in enumerate(sds):
        _set_cfg(results, s, 3.0 if i == 0 else 7.5)
    text = build_report("mixed", sds, results)["report"].read_text()
    assert "MIXED SETTINGS" in text.split("## ")[0]
    assert "the runs of `sds` differ in `guidance.guidance_scale` 3.0 / 7.5" in text


def test_scores_without_settings_say_so(job, tmp_path):
    results, specs = job
    sds = [s for s in specs if s.method == "sds"]
    scores = pd.read_parquet(build_report("old", sds, results)["scores"]).drop(columns=["settings"])
    old = tmp_path / "old.parquet"
    scores.to_parquet(old)
    from harness.report_settings import LabelSettings, settings_section

    assert "Not in these scores" in "\n".join(settings_section(LabelSettings.of(scores.to_dict("records"))))


def test_runs_whose_hub_revision_moved_are_flagged(job):
    """A label's runs made from a hub revision (`main`) before and after it moved: the same config,
    other weights (status.json's models_resolved names the commit). Flagged; a local folder's path
    (which names the machine, not the weights) is not a difference."""
    results, specs = job
    sds = [s for s in specs if s.method == "sds"]
    for i, s in enumerate(sds):
        f = s.run_dir(results) / "status.json"
        status = json.loads(f.read_text())
        status["models_resolved"] = {"unet": {"id": "org/model", "revision": "a" * 40 if i < 3 else "b" * 40,
                                              "path": f"/machine-{i}/snapshots"}}
        f.write_text(json.dumps(status))
    text = build_report("moved", sds, results)["report"].read_text()
    assert "the runs of `sds` differ in `weights.unet` org/model@" + "a" * 40 in text
    for i, s in enumerate(sds):
        f = s.run_dir(results) / "status.json"
        status = json.loads(f.read_text())
        status["models_resolved"]["unet"]["revision"] = "a" * 40
        f.write_text(json.dumps(status))
    assert "MIXED SETTINGS" not in build_report("same", sds, results)["report"].read_text()
