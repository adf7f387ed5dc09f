"""The ToyBench development split shares no caption and no object set with the test suite."""

from pathlib import Path

from prompts.suites import load_suite


def test_dev_split_is_disjoint_from_the_test_suite():
    from generators.toyworld.world import parse

    def objects(prompt):
        return frozenset(o.index for o in parse(prompt).objects)

    dev = load_suite("toybench-dev")
    test = load_suite("toybench")
    assert len(dev) == 16 and {e.category for e in dev} == {"dev_two_objects"}
    assert not {e.prompt for e in dev} & {e.prompt for e in test}
    # not even the same two objects in the other order
    assert not {objects(e.prompt) for e in dev} & {objects(e.prompt) for e in test}
    assert len({objects(e.prompt) for e in dev}) == 16


def test_tuning_and_control_jobs_plan_what_they_say():
    from pathlib import Path

    from harness.jobs import load_job
    from harness.plan import plan_job

    jobs = Path(__file__).resolve().parents[1] / "jobs"
    dev = plan_job(load_job(jobs / "toybench-dev-cfg.yaml"))
    assert len(dev) == 5 * 16 * 2 and {s.method for s in dev} == {"sds"}
    test_prompts = {e.prompt for e in load_suite("toybench")}
    assert not {s.prompt for s in dev} & test_prompts  # tuning never sees a test caption
    cfgs = {s.label: s.overrides["guidance"]["guidance_scale"] for s in dev}
    assert sorted(set(cfgs.values())) == [3.0, 7.5, 15.0, 30.0]
    # the AnchorDS side's sweep: the same grid on the same captions
    dev_a = plan_job(load_job(jobs / "toybench-dev-cfg-anchords.yaml"))
    assert {s.method for s in dev_a} == {"anchords-ipa", "anchords-ipa-filter", "anchords-ipa-finetune"}
    assert {s.prompt for s in dev_a} == {s.prompt for s in dev} and len(dev_a) == 3 * 4 * 16 * 2
    for method in {s.method for s in dev_a}:
        assert sorted({s.overrides["guidance"]["guidance_scale"] for s in dev_a if s.method == method}) == [3.0, 7.5, 15.0, 30.0]
    control = plan_job(load_job(jobs / "toybench-control.yaml"))
    assert len(control) == 6 * 40 * 3 and {s.prompt for s in control} == test_prompts
    assert {s.label for s in control} == {"sds", "sds-cfg-tuned", "anchords-ipa", "anchords-ipa-filter",
                                          "anchords-ipa-finetune", "anchords-ipa-finetune-cfg-tuned"}
    tuned = {s.label: (s.method, s.overrides["guidance"]["guidance_scale"]) for s in control if "tuned" in s.label}
    assert tuned["sds-cfg-tuned"][0] == "sds" and tuned["anchords-ipa-finetune-cfg-tuned"][0] == "anchords-ipa-finetune"
    assert {cfg for _, cfg in tuned.values()} <= {3.0, 7.5, 15.0, 30.0}  # each side's pick from its own sweep


def test_each_tuned_cfg_is_its_dev_sweeps_pick_on_the_committed_scores():
    """The rule of the dev jobs (highest mean dev alignment over every run, ties: the lower CFG),
    applied to their committed scores, gives the control job's tuned CFG of each method: a sweep
    rerun with more seeds that changes its pick fails here until the control follows it. Every
    tuned group of the control must have its method's sweep scored in a dev job."""
    import pandas as pd

    from harness.jobs import load_job
    from harness.plan import plan_job

    root = Path(__file__).resolve().parents[1]
    tuned = {s.method: s.overrides["guidance"]["guidance_scale"]
             for s in plan_job(load_job(root / "jobs" / "toybench-control.yaml")) if s.label.endswith("-cfg-tuned")}
    assert tuned, "the control has no tuned groups"
    picked = {}
    for job in ("toybench-dev-cfg", "toybench-dev-cfg-anchords"):
        # the job as it ran (its copy beside its scores), not as jobs/ may plan it for the next prior
        plan = [s for s in plan_job(load_job(root / "results" / job / "job.yaml"))
                if set(s.overrides) == {"guidance"}]  # CFG-only groups (not the init-opacity one)
        scores = pd.read_parquet(root / "results" / job / "scores.parquet")
        for method in sorted({s.method for s in plan}):
            cfg_of = {s.label: s.overrides["guidance"]["guidance_scale"] for s in plan if s.method == method}
            mine = scores[scores["label"].isin(list(cfg_of))]
            if mine.empty:
                continue  # swept in the job file, not run yet: no pick
            per_label = mine.groupby("label")["toybench_alignment"].agg(["mean", "count"])
            planned = pd.Series([s.label for s in plan if s.label in cfg_of]).value_counts()
            assert set(per_label.index) == set(cfg_of), f"{job}/{method}: a CFG of the sweep has no scores"
            assert (per_label["count"] == planned.reindex(per_label.index)).all(), f"{job}/{method}: scores incomplete"
            best = max(cfg_of, key=lambda lb: (round(per_label.loc[lb, "mean"], 9), -cfg_of[lb]))
            picked[method] = cfg_of[best]
    for method, cfg in tuned.items():
        assert method in picked, f"{method}: tuned in the control but no dev sweep of it is scored"
        assert cfg == picked[method], (method, cfg, picked[method])
