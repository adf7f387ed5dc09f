"""Expand a job into RunSpecs: (run group x prompt x seed), each with its run id and directory.

    RESULTS/runs/<method>/<category>/<run id>/      shared by every job: one spec, one run

Every method, model set and override is resolved once per run group (a bad one raises UserError
before anything runs); per prompt and seed only the prompt and seed change, so the run id comes
from the group's config dict with those two fields replaced (no torch import, no full config per
run: see harness.run_ids.RunIdTemplate).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from generators.errors import UserError
from generators.untrusted import brief
from harness.jobs import Job, RunGroup
from harness.run_ids import RunIdTemplate, slugify

RUNS_DIR = "runs"
# method, category and run id are folders of the run store, and the label, index and seed name
# report files: each one plain folder name, whoever wrote the plan (a saved plan.json is a file)
_PATH_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run (or find) one run: plain, picklable data."""

    label: str  # the run group (table column)
    method: str
    category: str  # a path-safe slug
    index: int  # the prompt's line in its category file
    prompt: str
    seed: int
    models: str  # resolved model set name
    overrides: dict = field(default_factory=dict, hash=False, compare=False)
    run_id: str = ""

    def __post_init__(self):
        for name in ("label", "method", "category", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _PATH_PART.fullmatch(value):
                raise UserError(f"a planned run's {name} {brief(value)} is not a plain folder name "
                                f"(letters, digits, '.', '_', '+', '-')")
        for name in ("index", "seed"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise UserError(f"a planned run's {name} {brief(getattr(self, name))} is not an integer")

    @property
    def rel_dir(self) -> str:
        return f"{RUNS_DIR}/{self.method}/{self.category}/{self.run_id}"

    def run_dir(self, results: str | Path) -> Path:
        return Path(results) / self.rel_dir

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "dir": self.rel_dir}


def _group_config_dict(group: RunGroup) -> tuple[dict, str]:
    """The config dict of the group's first run (prompt and seed are replaced per run)."""
    from generators.config import config_to_dict
    from generators.methods import resolve_run_config

    cfg = resolve_run_config(group.method, prompt="", seed=0, models=group.models, overrides=group.overrides)
    return config_to_dict(cfg), cfg.models


def plan_job(job: Job) -> list[RunSpec]:
    """All runs of a job in a stable order: group, then category, prompt, seed."""
    from prompts import load_suite

    entries = load_suite(job.prompts)
    if job.limit is not None:
        seen: dict[str, int] = {}
        kept = []
        for e in entries:
            seen[e.category] = seen.get(e.category, 0) + 1
            if seen[e.category] <= job.limit:
                kept.append(e)
        entries = kept
    categories = {e.category: slugify(e.category) for e in entries}
    specs: list[RunSpec] = []
    for group in job.groups():
        base, models = _group_config_dict(group)
        ids = RunIdTemplate(base)
        for e in entries:
            for seed in job.seeds:
                specs.append(RunSpec(group.name, group.method, categories[e.category], e.index, e.prompt,
                                     seed, models, group.overrides, ids.run_id(e.prompt, seed)))
    return specs
