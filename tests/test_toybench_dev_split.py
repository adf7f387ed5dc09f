"""The ToyBench development split shares no caption and no object set with the test suite."""

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
    assert {s.method for s in dev_a} == {"anchords-ipa-finetune"} and {s.prompt for s in dev_a} == {s.prompt for s in dev}
    assert sorted({s.overrides["guidance"]["guidance_scale"] for s in dev_a}) == [3.0, 7.5, 15.0, 30.0]
    control = plan_job(load_job(jobs / "toybench-control.yaml"))
    assert len(control) == 6 * 40 * 3 and {s.prompt for s in control} == test_prompts
    assert {s.label for s in control} == {"sds", "sds-cfg-tuned", "anchords-ipa", "anchords-ipa-filter",
                                          "anchords-ipa-finetune", "anchords-ipa-finetune-cfg-tuned"}
    tuned = {s.label: (s.method, s.overrides["guidance"]["guidance_scale"]) for s in control if "tuned" in s.label}
    assert tuned["sds-cfg-tuned"][0] == "sds" and tuned["anchords-ipa-finetune-cfg-tuned"][0] == "anchords-ipa-finetune"
    assert {cfg for _, cfg in tuned.values()} <= {3.0, 7.5, 15.0, 30.0}  # each side's pick from its own sweep
