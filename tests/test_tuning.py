"""harness.tuning: the development sweeps' rule (highest mean alignment, ties to the lower CFG)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.tuning import dev_picks, main, read_sweeps

JOB = """name: sweep
prompts: toybench-demo
seeds: [0, 1]
models: toy
runs:
  - {method: sds, label: sds-cfg3, overrides: {guidance: {guidance_scale: 3.0}}}
  - {method: sds, label: sds-cfg7.5, overrides: {guidance: {guidance_scale: 7.5}}}
  - {method: sds, label: sds-cfg30-opacity0.1, overrides: {guidance: {guidance_scale: 30.0}, init: {opacity: 0.1}}}
  - {method: anchords-ipa, label: ipa-cfg3, overrides: {guidance: {guidance_scale: 3.0}}}
  - {method: anchords-ipa, label: ipa-cfg15, overrides: {guidance: {guidance_scale: 15.0}}}
"""


def _sweep(tmp_path: Path, alignment: dict, drop: int = 0) -> Path:
    """results/sweep with its job copy and a scores.parquet of `alignment` per label (one value for
    every planned run of it), `drop` runs of the last label left unscored."""
    from harness.jobs import load_job
    from harness.plan import plan_job

    folder = tmp_path / "results" / "sweep"
    folder.mkdir(parents=True)
    (folder / "job.yaml").write_text(JOB)
    plan = plan_job(load_job(folder / "job.yaml"))
    rows = [{"label": s.label, "toybench_alignment": alignment[s.label]} for s in plan if s.label in alignment]
    scores = pd.DataFrame(rows[:len(rows) - drop])
    scores.to_parquet(folder / "scores.parquet")
    return tmp_path / "results"


def test_highest_mean_wins_ties_go_to_the_lower_cfg_and_other_groups_are_not_swept(tmp_path):
    # sds: 3 and 7.5 tie -> 3; the init-opacity group (not CFG-only) is no candidate even at 1.0
    results = _sweep(tmp_path, {"sds-cfg3": 0.5, "sds-cfg7.5": 0.5, "sds-cfg30-opacity0.1": 1.0,
                                "ipa-cfg3": 0.25, "ipa-cfg15": 0.75})
    assert dev_picks(["sweep"], results) == {"sds": 3.0, "anchords-ipa": 15.0}
    sds = next(s for s in read_sweeps(["sweep"], results) if s.method == "sds")
    assert set(sds.means) == {3.0, 7.5} and sds.means[3.0][0] == pytest.approx(0.5)


def test_a_sweep_scored_in_part_has_no_pick(tmp_path, capsys):
    results = _sweep(tmp_path, {"sds-cfg3": 0.5, "sds-cfg7.5": 0.25, "ipa-cfg3": 0.25, "ipa-cfg15": 0.75}, drop=1)
    assert dev_picks(["sweep"], results) == {"sds": 3.0}  # anchords-ipa misses a run
    assert main(["sweep", "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert "pick CFG 3" in out and "no pick yet" in out


def test_a_sweep_that_never_ran_is_a_clear_error(tmp_path, capsys):
    assert main(["nope", "--results", str(tmp_path)]) == 2
    assert "nope/job.yaml not found" in capsys.readouterr().err
