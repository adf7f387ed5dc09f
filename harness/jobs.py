"""Job files: which methods x prompts x seeds x settings make a table.

    name: paper-table1                 # RESULTS/<name>/ holds the job-level files
    description: ...
    prompts: t3bench                   # a suite name or a path to a .txt file (one prompt a line)
    limit: null                        # first N prompts of each category
    seeds: [0]
    models: null                       # model set for every run (default: each method's own)
    overrides: {steps: 1200}           # RunConfig overrides applied to every run
    methods: [sds, anchords-ipa]       # shorthand for runs: [{method: sds}, ...]
    runs:                              # or one entry per column of the table
      - {method: sds, models: sd21, overrides: {...}, label: sds-sd21}
    executor:
      kind: local                      # local | ray | slurm
      max_attempts: 3                  # failures of one run before it is given up
      local: {workers, threads_per_worker}
      slurm: {partition, time_min, gpus_per_node, mem_gb, cpus_per_task, array_parallelism,
              additional_parameters: {...}}
      ray: {address, num_gpus, num_cpus}

Loading is strict: an unknown key anywhere raises UserError naming the file and the key.
Paths inside a job file (`prompts`) resolve against the current directory first, then against
the job file's folder.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from generators.errors import UserError
from generators.untrusted import brief, hidden_characters, safe_load

EXECUTOR_KINDS = ("local", "ray", "slurm")
# a job name becomes a folder under RESULTS; "runs" is the shared run store (fullmatch: no "\n")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
RESERVED_NAMES = {"runs"}
SEED_LIMIT = 2**63  # seeds are torch generator seeds: [0, 2^63)
# SLURM: option names as sbatch spells them; options submitit sets itself for the job array's
# bookkeeping (a job file must not move its logs or reshape the array)
_SBATCH_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
SBATCH_RESERVED = {"array", "output", "error", "open-mode", "signal", "job-name", "wrap", "parsable"}
# numeric executor settings and their domains: key -> (lower bound, whether the bound is allowed)
_EXECUTOR_DOMAINS = {
    "max_attempts": (1, True), "local.workers": (1, True), "local.threads_per_worker": (1, True),
    "slurm.time_min": (1, True), "slurm.gpus_per_node": (0, True), "slurm.mem_gb": (0, False),
    "slurm.cpus_per_task": (1, True), "slurm.array_parallelism": (1, True), "slurm.max_num_timeout": (0, True),
    "slurm.poll_s": (0, False), "ray.num_gpus": (0, True), "ray.num_cpus": (0, False), "ray.max_retries": (0, True),
    "ray.local_num_cpus": (1, True),
}
# these identify a run and have their own job keys; an override may not change them behind its back
RESERVED_OVERRIDES = {"method", "prompt", "seed", "models"}


class JobFileError(UserError):
    """A job file that cannot be used."""


@dataclass
class SlurmSettings:
    partition: Optional[str] = None
    time_min: int = 24 * 60  # wall-clock limit of one array task
    gpus_per_node: int = 1
    mem_gb: Optional[float] = None
    cpus_per_task: int = 4
    array_parallelism: int = 64  # array tasks running at once
    additional_parameters: dict = field(default_factory=dict)  # extra sbatch options
    max_num_timeout: int = 10  # requeues after preemption/timeout before submitit gives up
    poll_s: float = 5.0  # how often the driver polls the queue while it waits


@dataclass
class RaySettings:
    address: Optional[str] = None  # None: start a local Ray; "auto" or "host:port": join a cluster
    num_gpus: float = 1.0  # per run; 0 on CPU-only machines
    num_cpus: float = 1.0  # per run
    max_retries: int = 3  # Ray re-runs a task whose worker process died (node lost, OOM)
    local_num_cpus: Optional[int] = None  # CPUs of a locally started Ray (default: all)


@dataclass
class LocalSettings:
    workers: int = 1  # runs at once, each in its own process when > 1 (CPU machines: one per core)
    threads_per_worker: Optional[int] = None  # torch threads of each worker process (default: cores / workers)


@dataclass
class ExecutorSettings:
    kind: str = "local"
    max_attempts: int = 3
    local: LocalSettings = field(default_factory=LocalSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    ray: RaySettings = field(default_factory=RaySettings)


@dataclass
class RunGroup:
    """One column of a table: a method with its model set and settings."""

    method: str
    models: Optional[str] = None
    overrides: dict = field(default_factory=dict)
    label: Optional[str] = None  # defaults to the method name

    @property
    def name(self) -> str:
        return self.label or self.method


@dataclass
class Job:
    name: str
    description: str = ""
    prompts: str = "t3bench"
    limit: Optional[int] = None
    seeds: list = field(default_factory=lambda: [0])
    models: Optional[str] = None
    overrides: dict = field(default_factory=dict)
    methods: list = field(default_factory=list)
    runs: list = field(default_factory=list)  # [RunGroup]
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    source: Optional[str] = None  # the file it came from (not a job-file key)

    def groups(self) -> list[RunGroup]:
        """`methods` and `runs` together, each with the job-wide models and overrides applied."""
        from generators.config import deep_merge

        out = [RunGroup(m) for m in self.methods] + list(self.runs)
        return [RunGroup(g.method, g.models or self.models, deep_merge(self.overrides, g.overrides), g.label)
                for g in out]


# ----------------------------------------------------------------------------------------------
# strict parsing


def _fail(where: str, message: str) -> JobFileError:
    return JobFileError(f"{where}: {message}")


def _typed(value: Any, types: tuple, where: str, key: str, what: str) -> Any:
    if value is None and type(None) in types:
        return None
    if isinstance(value, bool) and bool not in types:
        raise _fail(where, f"key '{key}': expected {what}, got {brief(value)}")
    if isinstance(value, int) and float in types and int not in types:
        return float(value)
    if not isinstance(value, tuple(t for t in types if t is not type(None))):
        raise _fail(where, f"key '{key}': expected {what}, got {brief(value)}")
    return value


_FIELD_TYPES = {
    str: ((str,), "a string"),
    Optional[str]: ((str, type(None)), "a string or null"),
    int: ((int,), "an integer"),
    Optional[int]: ((int, type(None)), "an integer or null"),
    float: ((float, int), "a number"),
    Optional[float]: ((float, int, type(None)), "a number or null"),
    dict: ((dict,), "a mapping"),
    list: ((list,), "a list"),
}


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    """A dataclass from a mapping; unknown keys and wrong types name the file and the dotted key."""
    if not isinstance(data, dict):
        raise _fail(where, f"'{prefix or 'top level'}' must be a mapping, got {type(data).__name__}")
    import typing

    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise _fail(where, f"unknown key '{key}' (valid keys{' of ' + prefix if prefix else ''}: "
                           f"{', '.join(names)})")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, where, key)
        elif tp in _FIELD_TYPES:
            types, what = _FIELD_TYPES[tp]
            kwargs[name] = _typed(value, types, where, key, what)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required key is missing
        raise _fail(where, f"'{prefix or 'top level'}': {e}") from None


def check_job_name(name: Any, where: str = "job") -> str:
    """`name` when it can be a folder under RESULTS (letters, digits, '.', '_', '+', '-'), else JobFileError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
        raise _fail(where, f"{brief(name)} is not a usable job name (letters, digits, '.', '_', '+', '-', "
                           f"starting with a letter or digit; not {', '.join(sorted(RESERVED_NAMES))})")
    return name


def _check_slurm(slurm: SlurmSettings, where: str) -> None:
    """Strings of the SLURM settings become lines of a batch script: one line each, nothing hidden."""
    def visible(key: str, text: str) -> None:
        hidden = hidden_characters(text)
        if hidden:
            raise _fail(where, f"key 'executor.slurm.{key}': {hidden[0][1]} at character {hidden[0][0]} "
                               f"(control and invisible characters are not allowed)")

    if slurm.partition is not None:
        visible("partition", slurm.partition)
    for name, value in slurm.additional_parameters.items():
        key = f"additional_parameters.{brief(name)}"
        if not isinstance(name, str) or not _SBATCH_KEY_RE.fullmatch(name):
            raise _fail(where, f"key 'executor.slurm.{key}': an sbatch option name (lowercase letters, digits, "
                               f"'-', '_'; without the leading '--')")
        if name.replace("_", "-") in SBATCH_RESERVED:
            raise _fail(where, f"key 'executor.slurm.{key}': set by the harness itself (not allowed: "
                               f"{', '.join(sorted(SBATCH_RESERVED))})")
        if isinstance(value, (dict, list)) or value is None:
            raise _fail(where, f"key 'executor.slurm.{key}': expected a string, number or true, got {brief(value)}")
        visible(f"additional_parameters.{name}", str(value))


def _check_executor_domains(ex: ExecutorSettings, where: str) -> None:
    for key, (low, inclusive) in _EXECUTOR_DOMAINS.items():
        value = ex
        for part in key.split("."):
            value = getattr(value, part)
        if value is None:  # an optional setting left to its default
            continue
        if not (math.isfinite(value) and (value >= low if inclusive else value > low)):
            raise _fail(where, f"key 'executor.{key}': must be {'at least' if inclusive else 'more than'} {low}, "
                               f"got {brief(value)}")


def apply_local_settings(ex: ExecutorSettings, where: str, workers: Optional[int] = None,
                         threads: Optional[int] = None) -> ExecutorSettings:
    """--workers / --threads from a command line applied to a job's executor, checked like the file's."""
    if workers is not None:
        ex.local.workers = workers
    if threads is not None:
        ex.local.threads_per_worker = threads
    _check_executor_domains(ex, where)
    return ex


def _validate(job: Job, where: str) -> Job:
    check_job_name(job.name, f"{where}: key 'name'")
    if job.limit is not None and job.limit < 1:
        raise _fail(where, f"key 'limit': must be at least 1, got {job.limit}")
    if not job.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < SEED_LIMIT
                                for s in job.seeds):
        raise _fail(where, f"key 'seeds': expected a non-empty list of integers in [0, 2^63), got {brief(job.seeds)}")
    if len(set(job.seeds)) != len(job.seeds):
        raise _fail(where, f"key 'seeds': duplicate seeds in {brief(job.seeds)}")
    if not all(isinstance(m, str) for m in job.methods):
        raise _fail(where, f"key 'methods': expected a list of method names, got {brief(job.methods)}")
    job.runs = [r if isinstance(r, RunGroup) else _build(RunGroup, r, where, f"runs[{i}]")
                for i, r in enumerate(job.runs)]
    if not job.methods and not job.runs:
        raise _fail(where, "no methods: give 'methods: [...]' or 'runs: [...]'")
    for key, overrides in [("overrides", job.overrides)] + [
            (f"runs[{i}].overrides", r.overrides) for i, r in enumerate(job.runs)]:
        bad = sorted(RESERVED_OVERRIDES & set(overrides))
        if bad:
            raise _fail(where, f"key '{key}.{bad[0]}': set it with the job key, not an override")
    from generators.methods import method_names

    known = method_names()
    for key, method in [(f"methods[{i}]", m) for i, m in enumerate(job.methods)] + [
            (f"runs[{i}].method", r.method) for i, r in enumerate(job.runs)]:
        if method not in known:  # a method names a shipped preset, never a path
            raise _fail(where, f"key '{key}': unknown method {brief(method)} (valid methods: {', '.join(known)})")
    labels = [g.name for g in job.groups()]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise _fail(where, f"the run group {dupes[0]!r} appears twice: give each a distinct 'label'")
    for label in labels:
        if not _NAME_RE.fullmatch(label):
            raise _fail(where, f"label {brief(label)}: letters, digits, '.', '_', '+', '-' only")
    ex = job.executor
    if ex.kind not in EXECUTOR_KINDS:
        raise _fail(where, f"key 'executor.kind': {brief(ex.kind)} is not one of {', '.join(EXECUTOR_KINDS)}")
    _check_executor_domains(ex, where)
    _check_slurm(ex.slurm, where)
    return job


def parse_job(data: Any, where: str, default_name: str | None = None) -> Job:
    """A validated Job from the loaded YAML of a job file (`where` names it in errors)."""
    if data is None:
        data = {}
    if isinstance(data, dict) and "name" not in data and default_name is not None:
        data = {"name": default_name, **data}
    if isinstance(data, dict) and "name" not in data:
        raise _fail(where, "missing key 'name'")
    job = _build(Job, data, where, "")
    job.source = where
    return _validate(job, where)


def load_job(path: str | Path) -> Job:
    """Read a job file; a missing file, bad YAML or an unknown key is a JobFileError (exit code 2)."""
    path = Path(path)
    if not path.is_file():
        raise JobFileError(f"{path}: job file not found")
    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise JobFileError(f"{path}: cannot read the job file: {e}") from None
    except yaml.YAMLError as e:
        raise JobFileError(f"{path}: not valid YAML: {e}") from None
    job = parse_job(data, str(path), default_name=path.stem)
    # a relative prompt file resolves against the job file's folder when not found from here
    if job.prompts.endswith(".txt") and not Path(job.prompts).exists():
        beside = path.parent / job.prompts
        if beside.exists():
            job.prompts = str(beside)
    return job


def job_to_dict(job: Job) -> dict:
    """The job as plain data (written to RESULTS/<name>/job.yaml)."""
    d = dataclasses.asdict(job)
    d.pop("source")
    return d
