"""Job files, planning and run ids: strict, deterministic, path-safe."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from generators.errors import UserError
from generators.methods import method_names, resolve_run_config
from harness.benchmark import Settings, build_job
from harness.jobs import load_job, parse_job
from harness.plan import plan_job
from harness.run_ids import run_id

REPO = Path(__file__).resolve().parents[1]


def _job(**kw):
    return parse_job({"name": "t", **kw}, "test")


def test_fast_run_id_template_matches_run_id():
    # the planner assembles the hashed JSON from pre-serialised parts; it must agree with run_id
    from generators.config import config_to_dict
    from harness.run_ids import RunIdTemplate

    for method in ("sds", "anchords-ipa-finetune", "anchords-cn-filter"):
        for prompt, seed in (("a red apple", 3), ("An explorer’s \"hat\"", 0)):
            cfg = resolve_run_config(method, prompt=prompt, seed=seed, models="tiny",
                                     overrides={"guidance": {"guidance_scale": 7.5}})
            assert RunIdTemplate(config_to_dict(cfg)).run_id(prompt, seed) == run_id(cfg)


def test_planned_run_ids_equal_ids_of_fully_resolved_configs():
    job = _job(prompts="demo", seeds=[0, 2], models="tiny", methods=["sds", "anchords-ipa"],
               overrides={"steps": 7})
    specs = plan_job(job)
    assert len(specs) == 2 * 3 * 2
    for spec in specs:
        cfg = resolve_run_config(spec.method, prompt=spec.prompt, seed=spec.seed, models=spec.models,
                                 overrides=spec.overrides)
        assert spec.run_id == run_id(cfg)


def test_same_spec_same_dir_changed_setting_new_dir():
    a = plan_job(_job(prompts="demo", methods=["sds"], models="tiny"))
    b = plan_job(_job(prompts="demo", methods=["sds"], models="tiny"))
    assert [s.rel_dir for s in a] == [s.rel_dir for s in b]
    for overrides in ({"steps": 5}, {"guidance": {"guidance_scale": 50.0}}):
        c = plan_job(_job(prompts="demo", methods=["sds"], models="tiny", overrides=overrides))
        assert not {s.rel_dir for s in a} & {s.rel_dir for s in c}
    d = plan_job(_job(prompts="demo", methods=["sds"], models="tiny", seeds=[1]))
    assert not {s.rel_dir for s in a} & {s.rel_dir for s in d}
    # the checkpoint cadence does not change the result, so it is the same run
    e = plan_job(_job(prompts="demo", methods=["sds"], models="tiny", overrides={"checkpoint_every": 3}))
    assert [s.rel_dir for s in a] == [s.rel_dir for s in e]


def test_full_benchmark_plans_every_method_times_300_prompts_times_3_seeds_distinctly():
    job = _job(prompts="t3bench", seeds=[0, 1, 2], methods=method_names())
    specs = plan_job(job)
    assert len(method_names()) >= 9
    assert len(specs) == 300 * len(method_names()) * 3
    assert len({s.rel_dir for s in specs}) == len(specs)
    assert {s.category for s in specs} == {"single", "surr", "multi"}


def test_limit_takes_the_first_prompts_of_each_category():
    specs = plan_job(_job(prompts="t3bench", limit=2, methods=["sds"]))
    assert [(s.category, s.index) for s in specs] == [
        ("single", 0), ("single", 1), ("surr", 0), ("surr", 1), ("multi", 0), ("multi", 1)]


def test_hostile_prompts_and_file_names_stay_inside_the_results_folder(tmp_path):
    prompts = tmp_path / "we$(touch pwned);ird ..txt"
    prompts.write_text("../../../etc/passwd\n$(rm -rf /) `id`\n/absolute/path\n", encoding="utf-8")
    specs = plan_job(_job(prompts=str(prompts), methods=["sds"], models="tiny"))
    results = tmp_path / "results"
    for spec in specs:
        path = spec.run_dir(results).resolve()
        assert path.is_relative_to(results.resolve() / "runs" / "sds")
        assert all(c.isalnum() or c == "-" for c in spec.run_id + spec.category)


def test_unknown_key_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "methods": ["sds"],
                                    "executor": {"slurm": {"partitoin": "gpu"}}}))
    with pytest.raises(UserError) as e:
        load_job(path)
    assert str(path) in str(e.value) and "executor.slurm.partitoin" in str(e.value)
    path.write_text(yaml.safe_dump({"name": "bad", "method": ["sds"]}))
    with pytest.raises(UserError, match="unknown key 'method'"):
        load_job(path)
    path.write_text(yaml.safe_dump({"name": "bad", "methods": ["sds"], "runs": [{"method": "sds", "lable": "x"}]}))
    with pytest.raises(UserError, match=r"runs\[0\]\.lable"):
        load_job(path)


def test_bad_values_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="seeds"):
        _job(methods=["sds"], seeds=[0, "one"])
    with pytest.raises(UserError, match="executor.kind"):
        _job(methods=["sds"], executor={"kind": "kubernetes"})
    with pytest.raises(UserError, match="job name"):
        _job(name="../escape", methods=["sds"])
    with pytest.raises(UserError, match="appears twice"):
        _job(methods=["sds"], runs=[{"method": "sds"}])
    with pytest.raises(UserError, match="valid methods: .*sds"):
        plan_job(_job(methods=["not-a-method"]))
    with pytest.raises(UserError, match="unknown config key"):
        plan_job(_job(methods=["sds"], overrides={"guidance": {"scale_typo": 1}}))


def test_repository_job_files_load_and_plan():
    expected = {
        "paper-table1": ["sds", "anchords-ipa-finetune", "anchords-cn-filter"],
        "ablation": ["sds", "anchords-ipa", "anchords-ipa-filter", "anchords-ipa-finetune"],
        "clip-table": ["anchords-cn", "anchords-ipa", "sds-bridge", "vsd", "vsd"],
        "smoke": ["sds", "anchords-ipa"],
    }
    for name, methods in expected.items():
        job = load_job(REPO / "jobs" / f"{name}.yaml")
        assert [g.method for g in job.groups()] == methods
        specs = plan_job(job)
        per_group = len(specs) // len(methods)
        assert per_group == (3 if name == "smoke" else 300)
    clip = {g.name: g.models for g in load_job(REPO / "jobs" / "clip-table.yaml").groups()}
    assert clip == {"anchords-cn": "sd21", "anchords-ipa": "sd15", "sds-bridge": "sd15", "vsd-sd21": "sd21",
                    "vsd-sd15": "sd15"}
    assert all(s.models == "tiny" for s in plan_job(load_job(REPO / "jobs" / "smoke.yaml")))


def test_command_line_settings_override_the_job_file():
    job = build_job(Settings(job=str(REPO / "jobs" / "smoke.yaml"), methods=["sds"], seeds=[4, 5], steps=3,
                             executor="ray", limit=1))
    assert [g.method for g in job.groups()] == ["sds"]
    assert job.seeds == [4, 5] and job.executor.kind == "ray"
    specs = plan_job(job)
    assert len(specs) == 3 * 2 and all(s.overrides["steps"] == 3 for s in specs)
    with pytest.raises(UserError, match="no run group or method"):
        build_job(Settings(job=str(REPO / "jobs" / "smoke.yaml"), methods=["sds-bridge"]))
    with pytest.raises(UserError, match="--method"):
        build_job(Settings())
    cli = build_job(Settings(methods=["sds", "anchords-ipa"]))
    assert cli.name == "sds+anchords-ipa" and cli.prompts == "t3bench"
    assert dataclasses.asdict(cli.executor)["kind"] == "local"


def test_workers_and_threads_flags_override_the_job_file_and_is_validated():
    toy = str(REPO / "jobs" / "toybench-dev-cfg-anchords.yaml")
    assert load_job(toy).executor.local.workers == 2
    job = build_job(Settings(job=toy, workers=1, threads=1))
    assert job.executor.local.workers == 1 and job.executor.local.threads_per_worker == 1
    assert [s.run_dir(Path("r")) for s in plan_job(job)] == [s.run_dir(Path("r")) for s in plan_job(load_job(toy))]
    with pytest.raises(UserError, match="workers"):
        build_job(Settings(job=toy, workers=0))
    with pytest.raises(UserError, match="threads_per_worker"):
        build_job(Settings(job=toy, threads=0))
