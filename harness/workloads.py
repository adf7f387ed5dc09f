"""Per-run functions the executors call: `workload(spec, run_dir, show_progress) -> status dict`.

A workload is named by "module:function" so that it crosses process boundaries (Ray, SLURM) by
name. The returned dict has "state" ("done", "failed" or "stopped") and, when failed, "reason".

    generate   the real one: resolve the run's config and call generators.train.run_generation
    counter    a stand-in for tests: counts `steps` steps, checkpoints, and can be killed anywhere
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from generators.errors import UserError
from generators.io import atomic_write_json

DEFAULT_WORKLOAD = "harness.workloads:generate"

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
    from generators.train import required_components, resolve_device

    device = resolve_device(cfg.device)
    key = (cfg.models, frozenset(required_components(cfg)), str(device))
    if cfg.guidance.finetune.enabled or cfg.guidance.source.kind not in _READ_ONLY_SOURCES:
        return load_models(cfg.models, key[1], device)
    if key not in _models_cache:
        _models_cache.clear()  # one set at a time: a worker rarely alternates, memory matters more
        _models_cache[key] = load_models(cfg.models, key[1], device)
    return _models_cache[key]


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
# the test workload

COUNTER_SLEEP_ENV = "HARNESS_COUNTER_SLEEP_S"  # seconds per step (default 0.02)
COUNTER_FAIL_WORD = "explode"  # a prompt containing it raises at step 1
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
            time.sleep(sleep_s)
            state = {"step": step + 1, "rows": state["rows"] + [{"step": step, "value": step * step}]}
            if state["step"] % every == 0 or state["step"] == steps:
                atomic_write_json(ckpt_path, state)
    atomic_write_json(run_dir / COUNTER_ROWS, {"rows": state["rows"]})
    status = {"state": "done", "prompt": spec.prompt, "steps": steps}
    atomic_write_json(run_dir / "status.json", status)
    return status
