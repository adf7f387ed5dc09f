"""Per-run functions the executors call: `workload(spec, run_dir, show_progress) -> status dict`.

A workload is named by "module:function" so that it crosses process boundaries (Ray, SLURM) by
name. The returned dict has "state" ("done", "failed" or "stopped") and, when failed, "reason".
Evaluation workloads also get `evaluation=` (harness.worker.EvalOptions) and may answer
"cached" (nothing left to score).

    generate        the real one: resolve the run's config and call generators.train.run_generation
    evaluate        score a finished run: metrics.evaluate.evaluate_run for the stages still missing
    counter         a stand-in for tests: counts `steps` steps, checkpoints, and can be killed anywhere
    score_counter   a stand-in scorer for tests: writes metrics.json stages without any model
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

from generators.errors import UserError
from generators.io import atomic_write_json

DEFAULT_WORKLOAD = "harness.workloads:generate"
EVAL_WORKLOAD = "harness.workloads:evaluate"

Workload = Callable[..., dict]


def load_workload(name: str) -> Workload:
    """The function named "module:function" (a UserError when it does not exist)."""
    module, _, func = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"workload {name!r} not found: {e}") from None
    if not callable(fn):
        raise UserError(f"workload {name!r} is not a function")
    return fn


# Sources whose networks a run only reads: their loaded models can serve the next run of the same
# worker process. A finetune (or any trainable source) changes weights, so it always loads afresh.
_READ_ONLY_SOURCES = ("negative-text", "text-modifier", "ip-adapter", "controlnet")
_models_cache: dict = {}


def _models_for(cfg):
    from generators.models.loader import load_models
    from generators.precision import resolve_precision
    from generators.train import required_components, resolve_device

    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device).weights_dtype
    key = (cfg.models, frozenset(required_components(cfg)), str(device), dtype)
    if cfg.guidance.finetune.enabled or cfg.guidance.source.kind not in _READ_ONLY_SOURCES:
        return load_models(cfg.models, key[1], device, dtype=dtype)
    if key not in _models_cache:
        _models_cache.clear()  # one set at a time: a worker rarely alternates, memory matters more
        _models_cache[key] = load_models(cfg.models, key[1], device, dtype=dtype)
    return _models_cache[key]


def check_generation_models(specs) -> None:
    """Before dispatch, once per job: every model set the runs need is on this machine with the
    components their methods use (MissingWeightsError naming what to fetch), so a job without
    weights fails once, with exit 2, instead of once per run. Embedded sets are built on demand."""
    from generators.methods import resolve_run_config
    from generators.models.loader import check_weights_pin, resolve_component
    from generators.models.spec import load_set_spec
    from generators.train import required_components

    needs: dict = {}
    seen = set()
    for spec in specs:
        key = (spec.method, spec.models, json.dumps(spec.overrides, sort_keys=True, default=str))
        if key in seen:
            continue
        seen.add(key)
        cfg = resolve_run_config(spec.method, prompt=spec.prompt, seed=spec.seed, models=spec.models,
                                 overrides=spec.overrides)
        needs.setdefault(cfg.models, set()).update(required_components(cfg) | {"base"})
    for models, components in needs.items():
        set_spec = load_set_spec(models)
        if set_spec.embedded:
            continue
        root = set_spec.file.parent
        for name in sorted(components):
            comp = set_spec.component(name)
            if comp is None:
                raise UserError(f"model set {set_spec.name} ({set_spec.file}) has no '{name}' component")
            resolve_component(set_spec, name, comp, root)
        check_weights_pin(set_spec)  # weights replaced without a new version: fail before any run


def check_metric_models(ev) -> None:
    """Before dispatch, once per eval: the metric model set has the weights of every requested
    stage (MissingWeightsError naming what to fetch). Embedded sets are built on demand."""
    from metrics.models import MetricModels, check_weights_pin, load_set_spec, resolve_device

    cfg, _ = eval_config(ev)
    spec = load_set_spec(cfg.models)
    if spec.embedded:
        return
    check_weights_pin(spec)
    models = MetricModels(set_name=spec.identity, spec=spec, device=resolve_device("cpu"), root=spec.file.parent)
    sections = {"quality": ("image_reward",), "clip": ("clip",), "toybench": ("toybench",), "alignment": ("captioner",)}
    for stage in ev.stages:
        for name in sections.get(stage, ()):
            data = spec.section(name)
            if data is None:
                raise UserError(f"metric model set {spec.name} ({spec.file}) has no '{name}' section (needed by {stage})")
            if name == "toybench":
                models.resolve("toybench.judge", data["judge"])
                continue
            models.resolve(name, data)
            if name == "image_reward":
                models.resolve("image_reward.tokenizer", data["tokenizer"])
    judge = spec.section("judge")
    if "alignment" in ev.stages and judge and getattr(cfg.alignment.judge, "kind", None) == "local":
        models.resolve("judge", judge)


def preflight(workload: str, specs, evaluation=None) -> None:
    """The checks a workload needs once before its runs are dispatched (UserError, exit 2)."""
    if not specs:
        return
    if workload == DEFAULT_WORKLOAD:
        check_generation_models(specs)
    elif workload == EVAL_WORKLOAD and evaluation is not None:
        check_metric_models(evaluation)


def generate(spec, run_dir: Path, show_progress: bool = False) -> dict:
    """One real generation run (resumes from its checkpoint)."""
    from generators.methods import resolve_run_config
    from generators.train import run_generation
    from harness.run_ids import run_id

    cfg = resolve_run_config(spec.method, prompt=spec.prompt, seed=spec.seed, models=spec.models,
                             overrides=spec.overrides)
    if run_id(cfg) != spec.run_id:  # the planner's fast hash must agree with the full config
        raise RuntimeError(f"run id mismatch: planned {spec.run_id}, resolved {run_id(cfg)}")
    return run_generation(cfg, run_dir, show_progress=show_progress, models=_models_for(cfg))


# ----------------------------------------------------------------------------------------------
# evaluation

FINISHED_AT_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # how metrics.evaluate stamps a stage's finished_at
_metrics_cache: dict = {}  # (models, device, overrides) -> (EvalConfig, set name, stages, models)


def eval_config(ev):
    """(EvalConfig, metric set name) of the eval options `ev` (cheap: no network is loaded)."""
    from metrics.__main__ import build_config
    from metrics.models import load_set_spec

    key = (ev.models, ev.device, tuple(ev.overrides))
    hit = _metrics_cache.get(key)
    if hit is not None:
        return hit[0], hit[1]
    cfg = build_config(ev.models, ev.device, list(ev.overrides))
    return cfg, load_set_spec(cfg.models).identity


def _metric_models_for(ev, cfg, set_name: str, stages: list[str]):
    """The metric networks for `stages`, loaded once per worker process and kept for its next runs
    (every stage the invocation asked for is loaded at once, so a later run never reloads)."""
    from metrics.config import STAGES
    from metrics.models import load_metric_models

    key = (ev.models, ev.device, tuple(ev.overrides))
    hit = _metrics_cache.get(key)
    if hit is not None and hit[3] is not None and set(stages) <= hit[2]:
        return hit[3]
    wanted = set(stages) | set(ev.stages) | (hit[2] if hit is not None else set())
    order = [s for s in STAGES if s in wanted]
    _metrics_cache.clear()  # one set at a time: metric networks are large
    models = load_metric_models(cfg.models, order, cfg.device, cfg)
    _metrics_cache[key] = (cfg, set_name, frozenset(order), models)
    return models


def _scored_since(entry, since: float) -> bool:
    """A stage record that has a score and was finished after `since` (a time.time()). finished_at
    has whole seconds: a stage finished in the second `since` falls in counts as older (re-scored
    rather than wrongly kept)."""
    from datetime import datetime

    if not isinstance(entry, dict) or entry.get("status") != "done":
        return False
    try:
        finished = datetime.strptime(str(entry.get("finished_at")), FINISHED_AT_FORMAT).timestamp()
    except ValueError:
        return False
    return finished > since


def stages_to_score(run_dir: Path, cfg, set_name: str, stages, force_before: float | None = None) -> list[str]:
    """The stages of `stages` the run still needs. Without force: those not scored with these
    settings (UserError when one was scored with others). With force: every stage not re-scored
    since `force_before`, so a forced evaluation that was interrupted resumes instead of
    starting over."""
    from harness.store import read_record
    from metrics.evaluate import metrics_file, pending_stages

    # the scores of the source being scored (metrics.json, or metrics_mesh.json for the mesh path);
    # CorruptFileError names the file and what to do
    record = read_record(Path(run_dir) / metrics_file(cfg)) or {}
    if force_before is None:
        return pending_stages(run_dir, cfg, set_name, stages)
    return [s for s in stages if not _scored_since(record.get(s), force_before)]


def stages_without_score(run_dir: Path, stages) -> list[str]:
    """The requested stages that hold no number yet: not computed, failed, or done without one (a
    judge that gave no rating). Such a run is not scored, in eval's count as in the report; a done
    stage is not recomputed by itself (the judge would likely answer alike): --force re-scores it."""
    from harness.store import METRICS_FILE, read_record, stage_has_score

    record = read_record(Path(run_dir) / METRICS_FILE) or {}
    return [s for s in stages if not stage_has_score(record.get(s))]


def _eval_result(record: dict, stages, computed: list[str]) -> dict:
    """The workload's status: done when every requested stage has a score in metrics.json."""
    from harness.store import stage_has_score

    missing = [(s, record.get(s) or {}) for s in stages if not stage_has_score(record.get(s))]
    if missing:
        def why(e: dict) -> str:
            status = e.get("status", "not scored")
            status = "no score" if status == "done" else status
            detail = e.get("reason") or e.get("missing_reason")
            return status + (f" ({detail})" if detail else "")

        reason = "; ".join(f"{s}: {why(e)}" for s, e in missing)
        return {"state": "failed", "reason": reason, "computed": computed}
    return {"state": "done", "computed": computed}


def evaluate(spec, run_dir: Path, show_progress: bool = False, evaluation=None) -> dict:
    """Score one finished run for the stages it still needs (metrics.json, resumable per stage)."""
    from metrics.evaluate import evaluate_run

    if evaluation is None:
        raise UserError("the evaluate workload needs eval options (python -m harness eval sets them)")
    run_dir = Path(run_dir)
    cfg, set_name = eval_config(evaluation)
    todo = stages_to_score(run_dir, cfg, set_name, evaluation.stages, evaluation.force_before)
    if not todo:
        return {"state": "cached"}
    models = _metric_models_for(evaluation, cfg, set_name, todo)
    log = None
    if show_progress:
        from tqdm.auto import tqdm

        log = tqdm.write
    record = evaluate_run(run_dir, cfg, models, todo, force=evaluation.force_before is not None, log=log)
    return _eval_result(record, evaluation.stages, todo)


# ----------------------------------------------------------------------------------------------
# the test workloads

COUNTER_SLEEP_ENV = "HARNESS_COUNTER_SLEEP_S"  # seconds per step (default 0.02)
COUNTER_FAIL_WORD = "explode"  # a prompt containing it raises at step 1
COUNTER_KILL_WORD = "sigkill"  # a prompt containing it makes the counter SIGKILL its own process once
COUNTER_KILLED = "killed.marker"
COUNTER_CHECKPOINT = "counter.json"  # {"step": next step, "rows": [...]}
COUNTER_EXECUTIONS = "executions.log"  # one "<pid> <step>" line per executed step (the test's probe)
COUNTER_ROWS = "rows.json"  # the finished run's rows, one per step


def counter(spec, run_dir: Path, show_progress: bool = False) -> dict:
    """Count `overrides.steps` steps (default 10), checkpointing every `overrides.checkpoint_every`.

    Like the generator: status.json "running" at start and "done" last, rows kept in the
    checkpoint so a resumed run writes each row exactly once.
    """
    run_dir = Path(run_dir)
    steps = int(spec.overrides.get("steps", 10))
    every = int(spec.overrides.get("checkpoint_every", 1))
    sleep_s = float(os.environ.get(COUNTER_SLEEP_ENV, "0.02"))
    atomic_write_json(run_dir / "status.json", {"state": "running", "prompt": spec.prompt})
    ckpt_path = run_dir / COUNTER_CHECKPOINT
    state = json.loads(ckpt_path.read_text()) if ckpt_path.is_file() else {"step": 0, "rows": []}
    with open(run_dir / COUNTER_EXECUTIONS, "a", encoding="utf-8") as log:
        while state["step"] < steps:
            step = state["step"]
            log.write(f"{os.getpid()} {step}\n")
            log.flush()
            if COUNTER_FAIL_WORD in spec.prompt and step == 1:
                raise RuntimeError(f"{COUNTER_FAIL_WORD}: the test workload failed on purpose at step {step}")
            if COUNTER_KILL_WORD in spec.prompt and step == 1 and not (run_dir / COUNTER_KILLED).exists():
                (run_dir / COUNTER_KILLED).touch()  # once: the resumed run goes on
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(sleep_s)
            state = {"step": step + 1, "rows": state["rows"] + [{"step": step, "value": step * step}]}
            if state["step"] % every == 0 or state["step"] == steps:
                atomic_write_json(ckpt_path, state)
    atomic_write_json(run_dir / COUNTER_ROWS, {"rows": state["rows"]})
    import torch

    # torch_threads: the executor's thread setting as the run saw it (the test's probe)
    status = {"state": "done", "prompt": spec.prompt, "steps": steps, "torch_threads": torch.get_num_threads()}
    atomic_write_json(run_dir / "status.json", status)
    return status


COUNTER_EVAL_FAIL_WORD = "unscorable"  # a prompt containing it makes score_counter raise
COUNTER_EVAL_EXECUTIONS = "eval_executions.log"  # one "<pid> <stage>" line per scored stage
# tests of two scorers at once: one touches SIGNAL when it scores a stage, the other waits for it
# after its first stage (at most 120 s), so both take part whatever the machine's load
COUNTER_SIGNAL_ENV, COUNTER_WAIT_ENV = "HARNESS_COUNTER_SIGNAL", "HARNESS_COUNTER_WAIT_FOR"


def score_counter(spec, run_dir: Path, show_progress: bool = False, evaluation=None) -> dict:
    """A stand-in for `evaluate` without networks: each missing stage gets the prompt's length as
    its score, in the record format metrics.evaluate writes (so resuming and --force behave the
    same), after HARNESS_COUNTER_SLEEP_S seconds."""
    from metrics.evaluate import METRICS_FILE, read_metrics, stage_settings

    run_dir = Path(run_dir)
    cfg, set_name = eval_config(evaluation)
    todo = stages_to_score(run_dir, cfg, set_name, evaluation.stages, evaluation.force_before)
    if not todo:
        return {"state": "cached"}
    sleep_s = float(os.environ.get(COUNTER_SLEEP_ENV, "0.02"))
    record = read_metrics(run_dir)
    with open(run_dir / COUNTER_EVAL_EXECUTIONS, "a", encoding="utf-8") as log:
        for stage in todo:
            log.write(f"{os.getpid()} {stage}\n")
            log.flush()
            if COUNTER_EVAL_FAIL_WORD in spec.prompt:
                raise RuntimeError(f"{COUNTER_EVAL_FAIL_WORD}: the test scorer failed on purpose at {stage}")
            time.sleep(sleep_s)
            if os.environ.get(COUNTER_SIGNAL_ENV):
                Path(os.environ[COUNTER_SIGNAL_ENV]).touch()
            if os.environ.get(COUNTER_WAIT_ENV):
                end = time.monotonic() + 120
                while not Path(os.environ[COUNTER_WAIT_ENV]).exists() and time.monotonic() < end:
                    time.sleep(0.05)
            record[stage] = {"status": "done", "score": float(len(spec.prompt)), "model_set": set_name,
                             "settings": stage_settings(cfg, stage),
                             "finished_at": time.strftime(FINISHED_AT_FORMAT)}
            atomic_write_json(run_dir / METRICS_FILE, record)
    return _eval_result(record, evaluation.stages, todo)
