"""Hostile and careless inputs (issue 14, items 1-6, 13, 18): each is refused with a clear message
(exit code 2 on the command line) before anything is written, and none escapes the results folder
or runs code.

The inputs are data in the lists below (one parametrised case each), so the count in the report is
the number of cases these tests collect: `pytest tests/test_hostile_inputs.py --collect-only -q`.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from generators.config import ConfigError, config_from_dict, parse_dotted
from generators.errors import UserError
from generators.methods import resolve_run_config
from harness.cli import main as _harness_main
from harness.jobs import load_job, parse_job
from harness.plan import RunSpec, plan_job

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "generators" / "methods" / "presets"
SETS = REPO / "generators" / "models" / "sets"


def _job(**kw):
    return parse_job({"name": "t", "models": "tiny", "prompts": "demo", **kw}, "test")


def harness_main(argv: list[str]) -> int:
    """`python -m harness` in this process: its exit code (argparse's errors exit with 2 too)."""
    try:
        return _harness_main(argv)
    except SystemExit as e:
        return e.code


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


# ----------------------------------------------------------------------------------------------
# 1. names that become paths


def _outside_preset(tmp_path: Path) -> Path:
    """A valid preset outside the presets folder (what an escaping method name would load)."""
    evil = tmp_path / "elsewhere" / "x.yaml"
    evil.parent.mkdir()
    shutil.copy(PRESETS / "sds.yaml", evil)
    return evil


HOSTILE_METHODS = [
    "RELATIVE",  # ../../../..<tmp>/elsewhere/x: a preset outside the repo, by a relative path
    "ABSOLUTE",  # /<tmp>/elsewhere/x
    "../../methods/presets/sds",  # the source tree itself
    "presets/../sds",
    "sds/",
    "sds\n",
    ".sds",
    "",
]


@pytest.mark.parametrize("method", HOSTILE_METHODS)
def test_a_method_is_a_known_preset_name_never_a_path(tmp_path, method):
    evil = _outside_preset(tmp_path).with_suffix("")
    method = {"RELATIVE": os.path.relpath(evil, PRESETS), "ABSOLUTE": str(evil)}.get(method, method)
    for job in ({"methods": [method]}, {"runs": [{"method": method, "label": "x"}]}):
        with pytest.raises(UserError, match="method"):
            plan_job(_job(**job))
    with pytest.raises(UserError, match="method"):
        resolve_run_config(method, prompt="a red apple", models="tiny")


@pytest.mark.parametrize("models", ["RELATIVE", "../sets/tiny", "tiny\n", "tiny/"])
def test_a_model_set_name_is_a_shipped_set_or_an_explicit_yaml_path(tmp_path, models):
    evil = tmp_path / "evil.yaml"
    shutil.copy(SETS / "tiny.yaml", evil)
    models = {"RELATIVE": os.path.relpath(evil.with_suffix(""), SETS)}.get(models, models)
    with pytest.raises(UserError, match="model set"):
        plan_job(_job(methods=["sds"], models=models))
    # an explicit yaml path stays a documented way to name a set of one's own
    assert plan_job(_job(methods=["sds"], models=str(evil)))


HOSTILE_JOB_NAMES = ["../outside", "a/../../outside", "/abs", "ok\n", "ok\u202e", "."]


@pytest.mark.parametrize("name", HOSTILE_JOB_NAMES)
def test_job_names_and_labels_match_a_strict_pattern(name):
    with pytest.raises(UserError, match="name"):
        _job(name=name, methods=["sds"])
    with pytest.raises(UserError, match="label"):
        _job(runs=[{"method": "sds", "label": name}])


@pytest.fixture()
def outside_job(tmp_path):
    """A results folder, and beside it (outside) a saved job that `../outside` would reach."""
    from harness.benchmark import save_job_files

    job = _job(name="outside", methods=["sds"], limit=1)
    save_job_files(job, plan_job(job), tmp_path / "outside")
    (tmp_path / "results").mkdir()
    return tmp_path


@pytest.mark.parametrize("command", ["status", "eval", "report"])
def test_status_eval_and_report_take_only_job_names_inside_results(outside_job, command, capsys):
    before = _files_under(outside_job / "outside")
    extra = ["--models", "tiny"] if command == "eval" else []
    assert harness_main([command, "../outside", "--results", str(outside_job / "results"), *extra]) == 2
    assert "job name" in capsys.readouterr().err
    assert _files_under(outside_job / "outside") == before  # no report, no scores written outside


def test_a_doctored_plan_cannot_point_a_run_outside_the_store(outside_job, capsys):
    plan_file = outside_job / "results" / "j" / "plan.json"
    shutil.copytree(outside_job / "outside", plan_file.parent)
    plan = json.loads(plan_file.read_text())
    for key, value in (("method", "../../../escape"), ("category", "../x"), ("run_id", "a/../../b")):
        doctored = {**plan, "runs": [{**plan["runs"][0], key: value}]}
        plan_file.write_text(json.dumps(doctored))
        assert harness_main(["report", "j", "--results", str(outside_job / "results")]) == 2
        assert "plan" in capsys.readouterr().err
    with pytest.raises(UserError):
        RunSpec("sds", "sds", "single", 0, "p", 0, "tiny", run_id="../../x")


@pytest.mark.parametrize("flag,value", [("--results", v) for v in ("res\nults", "res\u202eults", "res\u200bults", "")]
                         + [("--name", v) for v in ("na\nme", "na\u202eme", "na\u200bme")])
def test_output_folders_with_hidden_characters_are_refused(tmp_path, flag, value, capsys):
    args = ["benchmark", "--method", "sds", "--models", "tiny", "--prompts", "demo", "--dry-run"]
    args += [flag, value] if flag == "--name" else ["--results", str(tmp_path / value) if value else ""]
    assert harness_main(args) == 2
    assert "error:" in capsys.readouterr().err


def test_generator_out_with_hidden_characters_is_refused(tmp_path):
    r = _generators_cli("run", "--method", "sds", "--prompt", "a red apple", "--models", "tiny",
                        "--out", str(tmp_path / "run\u202egpj.exe"), "--print-config")
    assert r.returncode == 2 and "U+202E" in r.stderr


# ----------------------------------------------------------------------------------------------
# 2. checkpoints are data, never code


class _Payload:
    """Unpickling this creates a file: what a doctored checkpoint would do with a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_a_doctored_checkpoint_runs_no_code_on_resume(tmp_path):
    from generators.train import load_checkpoint

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"config_hash": _Payload(marker), "step": 1}, ckpt)
    cfg = resolve_run_config("sds", prompt="a red apple", models="tiny")
    with pytest.raises(Exception):
        load_checkpoint(ckpt, cfg, None, torch.device("cpu"))
    assert not marker.exists()


def test_every_torch_load_in_the_project_is_weights_only():
    calls = []
    for path in [*REPO.glob("generators/**/*.py"), *REPO.glob("harness/**/*.py"), *REPO.glob("metrics/**/*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if "torch.load(" in line:
                calls.append((f"{path.relative_to(REPO)}:{number}", "weights_only=True" in line))
    assert calls and all(ok for _, ok in calls), [where for where, ok in calls if not ok]


# ----------------------------------------------------------------------------------------------
# 3. SLURM settings: no line breaks into the batch script

HOSTILE_SLURM = [
    {"partition": "gpu\ntouch pwned"},
    {"partition": "gpu\rtouch pwned"},
    {"partition": "gpu\x00"},
    {"additional_parameters": {"comment": "x\ntouch pwned"}},
    {"additional_parameters": {"comment\ntouch pwned": "x"}},
    {"additional_parameters": {"--comment": "x"}},
    {"additional_parameters": {"comment": {"nested": "x"}}},
    {"additional_parameters": {"comment": "x\u2028touch pwned"}},
]


@pytest.mark.parametrize("slurm", HOSTILE_SLURM)
def test_slurm_settings_with_control_characters_are_refused(slurm):
    with pytest.raises(UserError, match="executor.slurm"):
        _job(methods=["sds"], executor={"kind": "slurm", "slurm": slurm})


def test_accepted_slurm_settings_make_one_sbatch_line_each(tmp_path):
    pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string

    extra = {"qos": "high", "constraint": "a100|h100", "exclusive": True, "comment": "it's $HOME; `id`"}
    job = _job(methods=["sds"], executor={"kind": "slurm", "slurm": {"partition": "gpu", "additional_parameters": extra}})
    script = _make_sbatch_string(command="true", folder=tmp_path, partition=job.executor.slurm.partition,
                                 additional_parameters=job.executor.slurm.additional_parameters)
    header = script.split("# command")[0]
    assert not [line for line in header.splitlines() if line and not line.startswith("#")]
    assert "#SBATCH --partition=gpu" in header and "#SBATCH --exclusive" in header


@pytest.mark.parametrize("folder,name", [("a\nb", "j"), ("a\u2028b", "j"), ("ok", "j\nx")])
def test_a_submitit_folder_or_job_name_with_a_line_break_is_refused(tmp_path, folder, name):
    from harness.executors.slurm_executor import make_executor
    from harness.jobs import SlurmSettings

    with pytest.raises(UserError, match="batch script"):
        make_executor(SlurmSettings(), tmp_path / folder, name)


# ----------------------------------------------------------------------------------------------
# 4. Make variables reach Python as single arguments, never as shell source

MAKE_INJECTIONS = ["x'; touch {marker}; echo '", 'x"; touch {marker}; echo "', "x`touch {marker}`", "a b;touch {marker}"]


def _make(tmp_path: Path, target: str, **variables) -> list[str]:
    """Run `make target` with python replaced by a recorder; returns the argv it was called with."""
    record = tmp_path / "argv.json"
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!{sys.executable}\nimport json, sys\n"
                           f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake_python.chmod(0o755)
    stamp = tmp_path / "stamp"
    stamp.touch()
    args = ["make", "--no-print-directory", "-C", str(REPO), target, f"PY={fake_python}", f"STAMP={stamp}"]
    args += [f"{k}={v}" for k, v in variables.items()]
    subprocess.run(args, capture_output=True, text=True, timeout=60)
    return json.loads(record.read_text()) if record.exists() else []


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("injection", MAKE_INJECTIONS)
@pytest.mark.parametrize("target,variable", [
    ("benchmark", "PROMPTS"), ("benchmark", "METHOD"), ("benchmark", "JOB"), ("benchmark", "MODELS"),
    ("benchmark", "SEEDS"), ("benchmark", "EXECUTOR"), ("benchmark", "LIMIT"), ("benchmark", "STEPS"),
    ("benchmark", "RESULTS"), ("benchmark", "WORKERS"), ("benchmark", "THREADS"), ("status", "JOB"),
    ("eval", "JOB"), ("eval", "EVAL_MODELS"), ("eval", "WORKERS"), ("eval", "THREADS"), ("report", "JOB"),
    ("demo", "OUT"), ("demo", "PROMPTS"), ("demo", "METHOD"), ("demo", "MODELS"), ("demo", "STEPS"),
    ("weights", "MODELS"), ("weights-eval", "EVAL_MODELS"),
])
def test_make_variables_reach_python_as_single_arguments(tmp_path, target, variable, injection):
    marker = tmp_path / "pwned"
    value = injection.format(marker=marker)
    others = {"METHOD": "sds", "JOB": "j", "MODELS": "tiny"}
    argv = _make(tmp_path, target, **{**others, variable: value})
    assert not marker.exists()
    assert value in argv, argv


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_clean_demo_removes_only_the_demo_folder(tmp_path):
    results = tmp_path / "my results"
    (results / "demo").mkdir(parents=True)
    (tmp_path / "my").mkdir()
    keep = tmp_path / "my" / "keep"
    keep.touch()
    (results / "keep").touch()
    subprocess.run(["make", "-C", str(REPO), "clean-demo", f"RESULTS={results}"], capture_output=True, timeout=60)
    assert not (results / "demo").exists() and (results / "keep").exists() and keep.exists()


# ----------------------------------------------------------------------------------------------
# 5. YAML documents are bounded (alias bombs, depth, size)


def _alias_bomb(levels: int = 6, width: int = 10) -> str:
    """`levels` anchors each listing the previous one `width` times: width**levels nodes expanded."""
    lines = ["l0: &l0 [" + ", ".join(["0"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


BOMB = _alias_bomb()


def _flow_bomb(levels: int = 6, width: int = 10) -> str:
    """The same bomb on one line (a --set value, a flow mapping in a job file)."""
    text = "[" + ", ".join(["0"] * width) + "]"
    for i in range(levels - 1):
        text = f"[&a{i} {text}, " + ", ".join([f"*a{i}"] * (width - 1)) + "]"
    return text


BOMB_FLOW = _flow_bomb()


@pytest.mark.parametrize("key", ["seeds", "overrides", "runs", "description", "methods", "executor"])
def test_an_alias_bomb_in_a_job_file_is_refused_quickly(tmp_path, key):
    body = {"seeds": f"seeds: {BOMB_FLOW}", "overrides": f"overrides: {{guidance: {{t_max: {BOMB_FLOW}}}}}",
            "runs": f"runs: [{{method: sds, overrides: {{x: {BOMB_FLOW}}}}}]", "description": f"description: {BOMB_FLOW}",
            "methods": f"methods: {BOMB_FLOW}", "executor": f"executor: {{slurm: {{additional_parameters: {{x: {BOMB_FLOW}}}}}}}"}
    path = tmp_path / "bomb.yaml"
    path.write_text("name: bomb\n" + ("" if key == "methods" else "methods: [sds]\n") + body[key] + "\n")
    with pytest.raises(UserError, match="refused"):
        load_job(path)


@pytest.mark.parametrize("text", [BOMB, "a: &a [*a]", "[" * 200 + "]" * 200, "x: " + "y" * 1_100_000])
def test_bounded_yaml_refuses_bombs_cycles_depth_and_size(text):
    from generators.untrusted import safe_load

    with pytest.raises(yaml.YAMLError, match="refused"):
        safe_load(text)


def test_an_alias_bomb_in_a_set_override_or_config_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="refused"):
        parse_dotted([f"guidance.t_max={BOMB_FLOW}"])
    path = tmp_path / "set.yaml"
    path.write_text((SETS / "tiny.yaml").read_text() + "\nx: " + BOMB_FLOW + "\n")
    from generators.models.spec import load_set_spec

    with pytest.raises(UserError, match="refused"):
        load_set_spec(path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("guidance: {t_max: " + BOMB_FLOW + "}\n")
    r = _generators_cli("run", "--method", "sds", "--prompt", "a", "--models", "tiny", "--out",
                        str(tmp_path / "o"), "--config", str(cfg), "--print-config")
    assert r.returncode == 2 and "refused" in r.stderr


def test_an_alias_bomb_in_a_reference_file_or_a_run_config_is_refused(tmp_path):
    from harness.browser.data import _background
    from harness.report import load_references

    (tmp_path / "ref.yaml").write_text(f"source: x\ntable: t3bench\nrows: {BOMB_FLOW}\n")
    with pytest.raises(UserError, match="refused"):
        load_references(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("views: {background: [1, 1, 1]}\nx: " + BOMB_FLOW + "\n")
    assert _background(run) == (0, 0, 0)  # the picture falls back, the report goes on
    (run / "config.yaml").write_text("views: {background: [1, 1, 1]}\n")
    assert _background(run) == (255, 255, 255)


def test_an_error_message_quotes_a_huge_value_briefly():
    with pytest.raises(UserError) as e:
        _job(methods=["sds"], seeds=list(range(-1, 100_000)))
    assert len(str(e.value)) < 500


# ----------------------------------------------------------------------------------------------
# 6. a model-set file names only the project's own builders


@pytest.mark.parametrize("embedded", ["os:system", "subprocess:getoutput", "builtins:exec",
                                      "tests.test_hostile_inputs:_Payload", "generators.models.tiny:model_cache_root"])
def test_a_model_set_names_only_the_projects_own_builders(tmp_path, embedded):
    from generators.models.spec import load_set_spec
    from metrics.models import load_set_spec as load_metric_set

    path = tmp_path / "set.yaml"
    data = yaml.safe_load((SETS / "tiny.yaml").read_text())
    path.write_text(yaml.safe_dump({**data, "embedded": embedded}))
    with pytest.raises(UserError, match="embedded"):
        load_set_spec(path)
    metric = yaml.safe_load((REPO / "metrics" / "model_sets" / "tiny.yaml").read_text())
    path.write_text(yaml.safe_dump({**metric, "embedded": embedded}))
    with pytest.raises(UserError, match="embedded"):
        load_metric_set(path)
    path.write_text(yaml.safe_dump({**metric, "clip": {**metric["clip"], "build": embedded}}))
    with pytest.raises(UserError, match="build"):
        load_metric_set(path)


# ----------------------------------------------------------------------------------------------
# 13. settings out of their domain: refused when the job is planned, before anything is written

BAD_SETTINGS = [
    ({"steps": 0}, "steps"), ({"steps": -5}, "steps"), ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"log_every": 0}, "log_every"), ({"views": {"turntable_fps": 0}}, "turntable_fps"),
    ({"views": {"turntable_frames": -1}}, "turntable_frames"), ({"views": {"grid_views": 0}}, "grid_views"),
    ({"views": {"width": 0}}, "views.width"), ({"views": {"background": [2, 0, 0]}}, "views.background"),
    ({"camera": {"batch_size": 0}}, "batch_size"), ({"camera": {"height": -1}}, "camera.height"),
    ({"camera": {"distance_range": [4, 1]}}, "distance_range"), ({"camera": {"near": 0}}, "near"),
    ({"camera": {"fov_y_range_deg": [0, 200]}}, "fov_y_range_deg"),
    ({"densify": {"every": 0}}, "densify.every"), ({"densify": {"max_gaussians": 0}}, "max_gaussians"),
    ({"init": {"opacity": 1.5}}, "init.opacity"), ({"init": {"ball_points": 0}}, "ball_points"),
    ({"init": {"sh_degree": 9}}, "sh_degree"), ({"optim": {"adam_eps": 0}}, "optim.adam_eps"),
    ({"guidance": {"guidance_scale": float("nan")}}, "guidance_scale"),
    ({"guidance": {"guidance_scale": float("inf")}}, "guidance_scale"),
    ({"guidance": {"vae_input_size": 4}}, "vae_input_size"),
    ({"guidance": {"source": {"vsd": {"lora_rank": 0}}}}, "lora_rank"),
    ({"guidance": {"source": {"vsd": {"camera_condition_dropout": 1.5}}}}, "camera_condition_dropout"),
    ({"render": {"dense_chunk_pixels": 0}}, "dense_chunk_pixels"),
    ({"guidance": {"filter": {"gamma": -1}}}, "gamma"),
]


@pytest.mark.parametrize("overrides,key", BAD_SETTINGS)
def test_settings_outside_their_domain_are_refused_when_planned(overrides, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        plan_job(_job(methods=["sds"], overrides=overrides))


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64])
def test_seeds_outside_0_to_2_63_are_refused(seed):
    with pytest.raises(UserError, match="seed"):
        _job(methods=["sds"], seeds=[seed])
    with pytest.raises(UserError, match="seed"):
        resolve_run_config("sds", prompt="a", seed=seed, models="tiny")


BAD_EXECUTOR = [
    {"local": {"workers": 0}}, {"local": {"workers": -2}}, {"local": {"threads_per_worker": 0}},
    {"slurm": {"time_min": 0}}, {"slurm": {"cpus_per_task": 0}}, {"slurm": {"array_parallelism": 0}},
    {"slurm": {"gpus_per_node": -1}}, {"slurm": {"mem_gb": 0}}, {"slurm": {"poll_s": 0}},
    {"slurm": {"max_num_timeout": -1}}, {"ray": {"num_cpus": 0}}, {"ray": {"num_gpus": -1}},
    {"ray": {"max_retries": -1}}, {"ray": {"local_num_cpus": 0}}, {"ray": {"num_gpus": float("nan")}},
    {"max_attempts": 0},
]


@pytest.mark.parametrize("executor", BAD_EXECUTOR)
def test_executor_settings_outside_their_domain_are_refused(executor):
    key = next(iter(executor))
    with pytest.raises(UserError, match=f"executor.{key}"):
        _job(methods=["sds"], executor=executor)


@pytest.mark.parametrize("args", [["--steps", "0"], ["--seeds", "0,-1"], ["--seeds", str(2**63)], ["--limit", "0"],
                                  ["--max-attempts", "0"], ["--set", "checkpoint_every=0"],
                                  ["--set", "views.turntable_fps=0"]])
def test_benchmark_refuses_bad_settings_with_exit_2_and_writes_nothing(tmp_path, args, capsys):
    results = tmp_path / "results"
    rc = harness_main(["benchmark", "--method", "sds", "--models", "tiny", "--prompts", "demo",
                       "--results", str(results), *args])
    assert rc == 2 and "error:" in capsys.readouterr().err
    assert not results.exists()


@pytest.mark.parametrize("item", ["quality.width=0", "quality.render_batch=0", "quality.icosphere_subdivisions=40",
                                  "clip.num_views=0", "toybench.size=0", "toybench.reference_seed=-1",
                                  "alignment_views.fov_y_deg=180", "quality.radius=.nan"])
def test_eval_settings_outside_their_domain_exit_2(item, capsys):
    from metrics.__main__ import main as metrics_main

    assert metrics_main(["eval", "nowhere", "--models", "tiny", "--set", item]) == 2
    assert item.split("=")[0] in capsys.readouterr().err


def test_every_shipped_preset_and_model_set_is_inside_the_domains():
    from generators.methods import method_names

    for method in method_names():
        for models in ("tiny", "toy", "sd15", "sd21", "sd15-random"):
            resolve_run_config(method, prompt="a", models=models)
    from metrics.__main__ import build_config

    for metric_set in ("t3bench", "tiny", "toybench"):
        build_config(metric_set, None, [])


# ----------------------------------------------------------------------------------------------
# 18. --set values, prompt lines, hidden characters

BAD_SET = ["guidance.guidance_scale=[1,", "=1", ".a=1", "a..b=1", "guidance=1&guidance.x=2",
           "steps=!!python/object/apply:os.system [echo]", "a=*undefined", "a={b: 1", "noequals"]


@pytest.mark.parametrize("item", BAD_SET)
def test_malformed_set_values_are_config_errors(item):
    with pytest.raises(ConfigError):
        parse_dotted(item.split("&"))


@pytest.mark.parametrize("item", BAD_SET)
def test_malformed_set_values_exit_2_on_every_command_line(tmp_path, item, capsys):
    sets = [a for part in item.split("&") for a in ("--set", part)]
    assert harness_main(["benchmark", "--method", "sds", "--models", "tiny", "--prompts", "demo", "--dry-run",
                         *sets]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("raw,value", [("1e38", 1e38), ("1E-4", 1e-4), ("-2e3", -2000.0), ("1.0e5", 1e5),
                                       (".5", 0.5), ("7", 7), ("1e", "1e"), ("abc", "abc")])
def test_set_values_are_yaml_scalars_with_exponent_floats(raw, value):
    parsed = parse_dotted([f"guidance.guidance_scale={raw}"])
    assert parsed == {"guidance": {"guidance_scale": value}} and type(parsed["guidance"]["guidance_scale"]) is type(value)
    if not isinstance(value, str):
        assert config_from_dict(parsed).guidance.guidance_scale == value


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_prompt_lines_split_on_newline_only(tmp_path, separator):
    from prompts.suites import PromptFileError, load_prompt_file

    path = tmp_path / "p.txt"
    path.write_text(f"a red apple{separator}a blue cube\na green cone\n", encoding="utf-8", newline="")
    with pytest.raises(PromptFileError, match=r"p\.txt:1:.*U\+"):
        load_prompt_file(path)


def test_prompt_files_with_crlf_line_ends_still_load(tmp_path):
    from prompts.suites import load_prompt_file

    path = tmp_path / "p.txt"
    path.write_bytes(b"a red apple\r\na blue cube\r\n")
    assert [e.prompt for e in load_prompt_file(path)] == ["a red apple", "a blue cube"]


HIDDEN = ["\u202e", "\u202d", "\u2066", "\u2069", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",
          "\u200f", "\x7f", "\t", "\x1b"]


@pytest.mark.parametrize("char", HIDDEN)
def test_prompts_with_hidden_characters_are_refused(tmp_path, char):
    from prompts.suites import PromptFileError, load_prompt_file

    path = tmp_path / "p.txt"
    path.write_text(f"a red apple\na blue{char} cube\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match=rf"p\.txt:2:.*U\+{ord(char):04X}"):
        load_prompt_file(path)


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\x0c", "\u2028"])
def test_generator_cli_refuses_hidden_characters_in_the_prompt(tmp_path, char):
    r = _generators_cli("run", "--method", "sds", "--prompt", f"a red{char} apple", "--models", "tiny",
                        "--out", str(tmp_path / "o"), "--print-config")
    assert r.returncode == 2 and f"U+{ord(char):04X}" in r.stderr


def _generators_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "generators", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
