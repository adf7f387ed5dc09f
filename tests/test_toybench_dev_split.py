"""The ToyBench development split shares no caption and no object set with the test suite."""

from pathlib import Path

import pytest

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
    # every control (the first prior's as it ran, and the one jobs/ plans now): the whole test suite,
    # 3 seeds every cell, SDS and AnchorDS each with a tuned group at a CFG of the sweeps' grid
    first = plan_job(load_job(jobs.parent / "results" / "toybench-control" / "job.yaml"))
    assert {s.label for s in first} == {"sds", "sds-cfg-tuned", "anchords-ipa", "anchords-ipa-filter",
                                        "anchords-ipa-finetune", "anchords-ipa-finetune-cfg-tuned"}
    for control in (first, plan_job(load_job(jobs / "toybench-control.yaml"))):
        groups = {s.label for s in control}
        assert len(control) == len(groups) * 40 * 3 and {s.prompt for s in control} == test_prompts
        assert {s.seed for s in control} == {0, 1, 2}
        tuned = {s.label: (s.method, s.overrides["guidance"]["guidance_scale"]) for s in control
                 if s.label.endswith("-cfg-tuned")}
        assert tuned["sds-cfg-tuned"][0] == "sds"
        assert any(method.startswith("anchords-ipa") for method, _ in tuned.values())
        assert {cfg for _, cfg in tuned.values()} <= {3.0, 7.5, 15.0, 30.0}  # each side's pick from its own sweep


ROOT = Path(__file__).resolve().parents[1]


def dev_picks(sweeps):
    from harness.tuning import dev_picks as picks

    return picks(sweeps, ROOT / "results")


# Each control and the development sweeps its tuned CFGs were picked from. A control that has run
# is read from its copy beside its scores (jobs/ plans for the prior the toy set holds now).
CONTROL_PICKS = [
    ("results/toybench-control/job.yaml", ("toybench-dev-cfg", "toybench-dev-cfg-anchords")),  # first prior
    ("jobs/toybench-control.yaml", ("toybench-dev-cfg-prior22k", "toybench-dev-cfg-anchords-prior22k")),  # prior at step 22,636
]
# The development sweeps run with the prior the toy set holds now: its run defaults follow them.
CURRENT_PRIOR_SWEEPS = ("toybench-dev-cfg-prior22k", "toybench-dev-cfg-anchords-prior22k")


@pytest.mark.parametrize("control, sweeps", CONTROL_PICKS, ids=[c for c, _ in CONTROL_PICKS])
def test_each_tuned_cfg_is_its_dev_sweeps_pick_on_the_committed_scores(control, sweeps):
    """Applied to the committed scores, the dev jobs' rule gives the control's tuned CFG of each
    method: a sweep rerun with more seeds that changes its pick fails here until the control
    follows it. Every tuned group of the control must have its method's sweep scored."""
    from harness.jobs import load_job
    from harness.plan import plan_job

    tuned = {s.method: s.overrides["guidance"]["guidance_scale"]
             for s in plan_job(load_job(ROOT / control)) if s.label.endswith("-cfg-tuned")}
    assert tuned, "the control has no tuned groups"
    picked = dev_picks(sweeps)
    for method, cfg in tuned.items():
        assert method in picked, f"{method}: tuned in the control but no dev sweep of it is scored"
        assert cfg == picked[method], (method, cfg, picked[method])


def test_the_toy_sets_default_cfgs_are_the_current_priors_dev_picks():
    """A method's CFG in the toy set's run defaults is its development pick with the prior the set
    holds now (the sweeps' scores must be of that prior's version)."""
    import pandas as pd

    from generators.methods import resolve_run_config
    from generators.models.spec import load_set_spec

    version = load_set_spec("toy").version
    for job in CURRENT_PRIOR_SWEEPS:
        scores_file = ROOT / "results" / job / "scores.parquet"
        if scores_file.is_file():
            assert set(pd.read_parquet(scores_file)["models_version"]) == {version}, job
    picked = dev_picks(CURRENT_PRIOR_SWEEPS)
    assert "sds" in picked, "SDS's sweep with the current prior is not scored"
    for method, cfg in picked.items():
        assert resolve_run_config(method, prompt="a red cube", models="toy").guidance.guidance_scale == cfg, method
