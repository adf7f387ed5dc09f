"""The whole chain on the tiny models: benchmark -> eval -> report, through the harness CLI."""

from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main as harness


@pytest.mark.slow
def test_benchmark_eval_report_on_the_tiny_set(tmp_path):
    prompts = tmp_path / "fruit.txt"
    prompts.write_text("a red apple\n", encoding="utf-8")
    results = tmp_path / "results"
    common = ["--results", str(results)]
    assert harness(["benchmark", "--job", "jobs/smoke.yaml", "--method", "sds", "--prompts", str(prompts),
                    "--steps", "3", "--name", "pipe", *common]) == 0
    assert harness(["eval", "pipe", "--models", "tiny", *common]) in (0, 1)  # tiny judge ratings may be missing
    assert harness(["report", "pipe", *common]) == 0

    scores = pd.read_parquet(results / "pipe" / "scores.parquet")
    assert len(scores) == 1 and scores.loc[0, "method"] == "sds" and scores.loc[0, "category"] == "fruit"
    assert scores.loc[0, "status"] != "missing"
    assert pd.notna(scores.loc[0, "quality"]) and pd.notna(scores.loc[0, "clip"])

    report = (results / "pipe" / "report.md").read_text()
    assert "published: anchords-table1" in report and "published: t3bench-leaderboard" in report
    assert "**sds**" in report and "(n=1/1)" in report  # our row, with its count
    assert "TINY MODELS" in report
    # a second eval recomputes nothing
    before = (next((results / "runs").rglob("metrics.json"))).stat().st_mtime_ns
    harness(["eval", "pipe", "--models", "tiny", *common])
    assert (next((results / "runs").rglob("metrics.json"))).stat().st_mtime_ns == before


@pytest.mark.slow
def test_demo_generates_scores_and_reports_toybench(tmp_path, capsys):
    """`make demo`'s chain (one method, few steps): toy-set runs, ToyBench scores, the report."""
    out = tmp_path / "demo"
    args = ["demo", "--method", "anchords-ipa", "--steps", "10", "--out", str(out)]
    assert harness(args) == 0
    job_dir = out / "toybench-demo-anchords-ipa"
    report = (job_dir / "report.md").read_text()
    assert "## ToyBench" in report and "**anchords-ipa**" in report and "ground truth" in report
    assert "## T3Bench" not in report  # no T3Bench section for a ToyBench-only job
    # it says what it is, shows intervals and the controls, and points at the full-suite report
    assert "AN ILLUSTRATION, NOT A RESULT" in report and "4 prompts x 1 seed(s)" in report
    from harness.demo import FULL_REPORT

    assert FULL_REPORT in report and "95% bootstrap interval" in report
    assert (Path(__file__).resolve().parents[1] / FULL_REPORT).is_file()  # it points at a committed report
    assert f"{FULL_REPORT} (made with `toy" in report  # and says which prior made it (the demo runs today's)
    assert "| control: fitted truth |" in report and "Control order, all" in report
    table = pd.read_parquet(job_dir / "toybench.parquet")
    assert {"one-object", "two-objects", "all"} <= set(table["category"])
    records = sorted((out / "runs").rglob("metrics.json"))
    assert len(records) == 4  # the 2 + 2 demo captions
    assert "ToyWorld is a world of coloured" in capsys.readouterr().out
    # running the demo again recomputes nothing
    stamps = [p.stat().st_mtime_ns for p in records]
    assert harness(args) == 0
    assert [p.stat().st_mtime_ns for p in records] == stamps
