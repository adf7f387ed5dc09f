"""Metric model sets: which networks score a run, with ids and revisions, and their loader.

    models = load_metric_models("t3bench", stages=("quality", "clip"), device="cuda")
    models.image_reward.score(prompt, images)      # ImageReward-v1.0, standardised
    models.clip.score(prompt, images)              # raw cosines

A set is a YAML file in `metrics/model_sets/` (or any path). Sections:

    name, description
    image_reward: {id, revision | path, checkpoint, med_config, tokenizer: {id, revision | path},
                   vision: {BlipVisionConfig kwargs}, max_text_length, reward_mean, reward_std,
                   image_mean, image_std}
    clip:         {model, pretrained, id, revision, quick_gelu}   # real: open_clip tag, hub repo checked+recorded
                  {model, pretrained, path, quick_gelu}           # open_clip local-dir folder (tiny)
                  quick_gelu: the activation the weights were trained with (OpenAI's: true)
    captioner, judge: free-form mappings read by metrics.alignment (not parsed here)
    toybench:     {judge: {path}}   # ToyWorld's judge (generators/models/toy/judge)
    stages:       the stages this set scores by default (default: quality, alignment, clip)
    eval_defaults: EvalConfig overrides suited to the set (the tiny set shrinks every protocol)
    embedded: module:function   returns the folder relative `path:`s resolve against (BUILDERS only)
    build_seed: int             seed of the components built on demand

A section (or nested component) may carry `fetch_files: [...]` (what `python -m metrics weights`
downloads) and, with a relative `path`, `build: module:function` (one of BUILDERS) — called as fn(folder, seed) to
write that folder when it is missing or stale (the tiny set; same cache root as the generator's).

Hub ids resolve through the generator's resolver (`generators.models.loader.resolve_component`:
the local HF cache only, never the network); a missing one raises MissingWeightsError naming the
id, the revision and the command that fetches it.

Alignment models: for the alignment stage, `metrics.alignment.load_alignment_models(cfg.alignment,
device, captioner_folder, judge_folder)` is called with the folders of this set's `captioner` and
`judge` sections (resolved here; None when the set has no such section) and its result is kept in
`models.alignment`.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
import yaml

from generators.errors import MissingWeightsError, UserError
from generators.io import honour_umask
from generators.models.spec import ComponentSpec
from generators.untrusted import brief, safe_load

SETS_DIR = Path(__file__).resolve().parent / "model_sets"
STAMP_FILE = "_built.json"
_OPAQUE = ("captioner", "judge")  # read by metrics.alignment
# the only functions a set's `embedded:` and `build:` may name: a set file is data, not code
BUILDERS = frozenset({"metrics.models:tiny_root", "metrics.image_reward:build_tiny_image_reward",
                      "metrics.clip_score:build_tiny_clip", "metrics.captioner:build_tiny_captioner",
                      "metrics.judges:build_tiny_judge"})
_TOP_KEYS = {"name", "description", "embedded", "build_seed", "image_reward", "clip", "eval_defaults", "toybench",
             "stages", "version", "weights_sha256", *_OPAQUE}
_COMPONENT_KEYS = {"id", "revision", "subfolder", "path", "fetch_files", "build"}
_IR_KEYS = _COMPONENT_KEYS | {"checkpoint", "med_config", "tokenizer", "vision", "max_text_length", "reward_mean",
                              "reward_std", "image_mean", "image_std"}
_CLIP_KEYS = _COMPONENT_KEYS | {"model", "pretrained", "quick_gelu"}


@dataclass
class MetricSetSpec:
    name: str
    file: Path
    raw: dict  # the parsed yaml
    description: str = ""
    embedded: Optional[str] = None
    build_seed: int = 0
    eval_defaults: dict = field(default_factory=dict)
    stages: tuple = ()  # the stages scored when none are named
    # pins the weights of the set's local folders (generators/models/fingerprint.py)
    version: str = ""
    weights_sha256: str = ""

    @property
    def identity(self) -> str:
        """The set as metric records name it: `toybench`, or `toybench@<version>`."""
        from generators.models.fingerprint import identity

        return identity(self.name, self.version)

    def section(self, name: str) -> Optional[dict]:
        value = self.raw.get(name)
        return value if isinstance(value, dict) else None


# ----------------------------------------------------------------------------------------------
# Parsing


def set_file(models: str | Path) -> Path:
    """The yaml of a metric model set (name in metrics/model_sets/, or a path)."""
    from generators.models.spec import set_file as generator_set_file

    return generator_set_file(models, SETS_DIR, kind="metric model set")


def _check_keys(file: Path, where: str, data: Any, allowed: set[str]) -> dict:
    if not isinstance(data, dict):
        raise UserError(f"{file}: '{where}' must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(f"{file}: unknown key(s) {', '.join(repr(f'{where}.{k}') for k in unknown)} in '{where}' "
                        f"(valid: {', '.join(sorted(allowed))})")
    return data


def component(file: Path, where: str, data: dict) -> ComponentSpec:
    """The id/revision/subfolder/path part of a section as the generator's ComponentSpec."""
    if data.get("id") is None and data.get("path") is None:
        raise UserError(f"{file}: '{where}' needs an 'id' (hub repo) or a 'path' (local folder)")
    return ComponentSpec(id=data.get("id"), revision=str(data.get("revision", "main")),
                         subfolder=str(data.get("subfolder", "")), path=data.get("path"))


def parse_set(data: Any, file: Path) -> MetricSetSpec:
    data = _check_keys(file, "", data if data is not None else {}, _TOP_KEYS)
    if "image_reward" in data:
        ir = _check_keys(file, "image_reward", data["image_reward"], _IR_KEYS)
        component(file, "image_reward", ir)
        missing = [k for k in ("checkpoint", "med_config", "tokenizer", "vision", "max_text_length", "reward_mean",
                               "reward_std", "image_mean", "image_std") if k not in ir]
        if missing:
            raise UserError(f"{file}: 'image_reward' lacks {', '.join(missing)}")
        component(file, "image_reward.tokenizer", _check_keys(file, "image_reward.tokenizer", ir["tokenizer"], _COMPONENT_KEYS))
        _check_keys(file, "image_reward.vision", ir["vision"], set(ir["vision"]))
    if "clip" in data:
        clip = _check_keys(file, "clip", data["clip"], _CLIP_KEYS)
        if "model" not in clip:
            raise UserError(f"{file}: 'clip' needs 'model' (an open_clip model name, e.g. ViT-L-14)")
        component(file, "clip", clip)
    if "toybench" in data:
        tb = _check_keys(file, "toybench", data["toybench"], {"judge"})
        component(file, "toybench.judge", _check_keys(file, "toybench.judge", tb.get("judge"), _COMPONENT_KEYS))
    from metrics.config import STAGES, T3BENCH_STAGES

    stages = data.get("stages", list(T3BENCH_STAGES))
    if not isinstance(stages, list) or not stages or any(s not in STAGES for s in stages):
        raise UserError(f"{file}: 'stages' must be a non-empty list of {', '.join(STAGES)}, got {brief(stages)}")
    embedded = data.get("embedded")
    if embedded is not None and embedded not in BUILDERS:
        raise UserError(f"{file}: 'embedded' must be one of the project's builders, got {brief(embedded)}")
    eval_defaults = data.get("eval_defaults") or {}
    if eval_defaults:
        from metrics.config import ConfigError, eval_config_from_dict

        try:
            eval_config_from_dict(eval_defaults)
        except ConfigError as e:
            raise UserError(f"{file}: eval_defaults: {e}") from None
    from generators.models.fingerprint import parse_pin

    version, pin = parse_pin(file, data)
    spec = MetricSetSpec(name=str(data.get("name", file.stem)), file=file, raw=data, version=version, weights_sha256=pin,
                         description=str(data.get("description", "")), embedded=embedded,
                         build_seed=int(data.get("build_seed", 0)), eval_defaults=eval_defaults,
                         stages=tuple(s for s in STAGES if s in stages))
    for _, ref in _builds(spec):
        if ref not in BUILDERS:
            raise UserError(f"{file}: 'build' must be one of the project's builders, got {brief(ref)}")
    if pin and not _local_paths(spec):
        raise UserError(f"{file}: 'weights_sha256' pins local folders, but no section has a 'path'")
    return spec


def load_set_spec(models: str | Path) -> MetricSetSpec:
    file = set_file(models)
    try:
        data = safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"{file}: not valid YAML: {e}") from None
    return parse_set(data, file)


def fetch_hint(spec: MetricSetSpec) -> str:
    name = spec.name if spec.file.parent == SETS_DIR else str(spec.file)
    return f"python -m metrics weights {name}"


# ----------------------------------------------------------------------------------------------
# Components built on demand (tiny set)


def tiny_root() -> Path:
    """Folder of the embedded metric set: beside the generator's tiny set in the model cache."""
    from generators.models.tiny import model_cache_root

    return model_cache_root() / "metrics-tiny"


def _import(ref: str, file: Path):
    if ref not in BUILDERS:  # a set file is data: it may name our builders, not any code
        raise UserError(f"{file}: 'embedded' or 'build' names {brief(ref)}, not one of the project's builders "
                        f"({', '.join(sorted(BUILDERS))})")
    module_name, func_name = ref.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), func_name), importlib.import_module(module_name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{file}: {ref!r} cannot be imported: {e}") from e


def _parts(spec: MetricSetSpec) -> list[dict]:
    """Every section and nested component mapping of the set."""
    out = []
    for value in spec.raw.values():
        if isinstance(value, dict):
            out += [value] + [v for v in value.values() if isinstance(v, dict)]
    return out


def _local_paths(spec: MetricSetSpec) -> list[str]:
    return [part["path"] for part in _parts(spec) if isinstance(part.get("path"), str)]


def set_root(spec: MetricSetSpec) -> Path:
    """The folder relative `path:`s resolve against: the `embedded` builder's, else the yaml's."""
    if spec.embedded:
        root_fn, _ = _import(spec.embedded, spec.file)
        return Path(root_fn())
    return spec.file.parent


def local_folders(spec: MetricSetSpec) -> list[Path]:
    """The local folders the set's sections name, each once: what `weights_sha256` pins."""
    root = set_root(spec)
    folders: list[Path] = []
    for rel in _local_paths(spec):
        folder = (Path(rel) if Path(rel).is_absolute() else root / rel).resolve()
        if folder not in folders:
            folders.append(folder)
    return folders


def check_weights_pin(spec: MetricSetSpec) -> None:
    """UserError when the set pins its local weights (`weights_sha256`) and they have changed."""
    if spec.weights_sha256:
        from generators.models.fingerprint import check_pin

        name = spec.name if spec.file.parent == SETS_DIR else str(spec.file)
        check_pin(f"metric model set {spec.name}", spec.file, spec.weights_sha256, local_folders(spec),
                  f"python -m generators.models.fingerprint {name} --metric")


def _builds(spec: MetricSetSpec) -> list[tuple[str, str]]:
    """(relative path, builder) of every section or nested component with a `build`."""
    out = []
    for part in _parts(spec):
        if part.get("build"):
            if not part.get("path") or Path(part["path"]).is_absolute():
                raise UserError(f"{spec.file}: a component with 'build' needs a relative 'path'")
            out.append((part["path"], part["build"]))
    return out


def ensure_built(spec: MetricSetSpec, root: Path) -> None:
    """Build every missing or stale on-demand component under `root` (file-locked, atomic rename)."""
    from filelock import FileLock

    for rel, ref in _builds(spec):
        build, module = _import(ref, spec.file)
        stamp = {"builder": ref, "seed": spec.build_seed, "version": getattr(module, "TINY_VERSION", 1)}
        target = root / rel
        if _stamp(target) == stamp:
            continue
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / ".build.lock")):
            if _stamp(target) == stamp:  # another worker built it while we waited
                continue
            print(f"[metrics] building {ref} into {target} (seed {spec.build_seed}) ...", file=sys.stderr, flush=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build.", dir=target.parent if target.parent.exists() else root))
            honour_umask(tmp)  # the folder readable as a plain mkdir makes it, not 0700
            try:
                build(tmp, spec.build_seed)
                (tmp / STAMP_FILE).write_text(json.dumps(stamp) + "\n")
                if target.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
                    os.replace(target, old / "x")
                    shutil.rmtree(old, ignore_errors=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


def _stamp(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# Loading


@dataclass
class MetricModels:
    set_name: str
    spec: MetricSetSpec
    device: torch.device
    root: Path  # where relative `path:`s resolve
    image_reward: Any = None  # metrics.image_reward.ImageRewardScorer
    clip: Any = None  # metrics.clip_score.ClipScorer
    alignment: Any = None  # whatever metrics.alignment.load_alignment_models returned
    toybench: Any = None  # metrics.toybench.ToyBenchModels
    unavailable: dict = field(default_factory=dict)  # stage -> why it cannot run
    resolved: dict = field(default_factory=dict)  # component -> {id, revision, path}

    def section(self, name: str) -> Optional[dict]:
        return self.spec.section(name)

    def resolve(self, name: str, data: dict) -> tuple[Path, dict]:
        """Local folder of a component mapping ({id, revision, subfolder} or {path}) + its record."""
        from generators.models.loader import hub_cache_dir, resolve_component

        comp = component(self.spec.file, name, data)
        try:
            folder, record = resolve_component(self.spec, name, comp, self.root)
        except MissingWeightsError as e:
            where = (f"folder {self.root / comp.path} does not exist" if comp.path is not None
                     else f"{comp.id} (revision {comp.revision}) is not in the local Hugging Face cache {hub_cache_dir()}")
            raise MissingWeightsError(
                f"metric model set {self.spec.name}: '{name}': {where}; fetch it with: {fetch_hint(self.spec)}"
            ) from e
        if comp.subfolder:
            folder = folder / comp.subfolder
        self.resolved[name] = record
        return folder, record


def _need_file(models: MetricModels, name: str, folder: Path, filename: str) -> Path:
    path = folder / filename
    if not path.is_file():
        raise MissingWeightsError(f"metric model set {models.spec.name}: '{name}' has no {filename} in {folder}; "
                                  f"fetch it with: {fetch_hint(models.spec)}")
    return path


def _load_image_reward(models: MetricModels) -> None:
    from metrics.image_reward import load_image_reward

    ir = models.section("image_reward")
    if ir is None:
        raise UserError(f"metric model set {models.spec.name} ({models.spec.file}) has no 'image_reward' section "
                        f"(needed by the quality stage)")
    folder, record = models.resolve("image_reward", ir)
    tok_folder, tok_record = models.resolve("image_reward.tokenizer", ir["tokenizer"])
    info = {"set": models.spec.name, "id": record["id"], "revision": record["revision"],
            "checkpoint": ir["checkpoint"], "tokenizer": {"id": tok_record["id"], "revision": tok_record["revision"]}}
    models.image_reward = load_image_reward(
        _need_file(models, "image_reward", folder, ir["checkpoint"]),
        _need_file(models, "image_reward", folder, ir["med_config"]),
        tok_folder, ir, models.device, info,
    )


def _load_clip(models: MetricModels) -> None:
    from metrics.clip_score import load_clip

    clip = models.section("clip")
    if clip is None:
        raise UserError(f"metric model set {models.spec.name} ({models.spec.file}) has no 'clip' section")
    folder, record = models.resolve("clip", clip)
    info = {"set": models.spec.name, "id": record["id"], "revision": record["revision"]}
    if clip.get("path") is not None:  # open_clip local-dir folder; else by tag from the same hub repo in the HF cache
        _need_file(models, "clip", folder, "open_clip_config.json")
    quick_gelu = bool(clip.get("quick_gelu", False))
    try:
        models.clip = load_clip(clip["model"], clip.get("pretrained"), folder if clip.get("path") is not None else None,
                                models.device, info, quick_gelu=quick_gelu)
    except ValueError as e:
        raise UserError(f"metric model set {models.spec.name} ({models.spec.file}): {e}") from None


def _load_alignment(models: MetricModels, alignment_cfg: Any) -> None:
    """metrics.alignment's captioner (+ local judge), from this set's `captioner` / `judge`
    sections when present (else from the ids in the alignment config)."""
    try:
        alignment = importlib.import_module("metrics.alignment")
    except ModuleNotFoundError as e:
        if e.name not in ("metrics.alignment", "metrics.captioner", "metrics.judges"):
            raise
        models.unavailable["alignment"] = "metrics.alignment is not implemented yet"
        return
    hook = getattr(alignment, "load_alignment_models", None)
    if hook is None:
        models.unavailable["alignment"] = "metrics.alignment has no load_alignment_models()"
        return
    cap, judge = models.section("captioner"), models.section("judge")
    cap_folder, cap_record = models.resolve("captioner", cap) if cap else (None, None)
    judge_kind = getattr(getattr(alignment_cfg, "judge", None), "kind", None)
    judge_folder, judge_record = models.resolve("judge", judge) if judge and judge_kind == "local" else (None, None)
    # the set's records name what is loaded from its folders (not the config's model ids)
    from metrics.judges import JudgeUnavailableError

    try:  # the judge is asked once, here, before the captioner loads and before any captioning
        models.alignment = hook(alignment_cfg, str(models.device), captioner_folder=cap_folder,
                                judge_folder=judge_folder, captioner_record=cap_record, judge_record=judge_record,
                                check=True)
    except JudgeUnavailableError as e:
        raise UserError(f"alignment judge not usable, nothing captioned: {e}") from None


def _load_toybench(models: MetricModels) -> None:
    from metrics.toybench import load_toybench_models

    tb = models.section("toybench")
    if tb is None:
        raise UserError(f"metric model set {models.spec.name} ({models.spec.file}) has no 'toybench' section "
                        f"(the toybench stage scores ToyWorld runs: use --models toybench)")
    folder, _ = models.resolve("toybench.judge", tb["judge"])
    _need_file(models, "toybench.judge", folder, "judge.safetensors")
    models.toybench = load_toybench_models(folder, models.device)


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_metric_models(set_name: str | Path, stages: Iterable[str] = ("quality", "alignment", "clip"),
                       device: str | torch.device = "cpu", cfg: Any = None) -> MetricModels:
    """Load the networks the given stages need (quality: ImageReward; clip: open_clip; alignment:
    metrics.alignment's captioner and judge, when that module exists). `cfg` (an EvalConfig)
    gives the alignment settings; by default the set's eval_defaults."""
    from metrics.config import STAGES, deep_merge, eval_config_from_dict

    stages = tuple(stages)
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise UserError(f"unknown evaluation stage(s) {', '.join(unknown)} (valid: {', '.join(STAGES)})")
    spec = load_set_spec(set_name)
    root = set_root(spec)
    ensure_built(spec, root)
    check_weights_pin(spec)
    models = MetricModels(set_name=spec.identity, spec=spec, device=resolve_device(device), root=root)
    if "quality" in stages:
        _load_image_reward(models)
    if "clip" in stages:
        _load_clip(models)
    if "toybench" in stages:
        _load_toybench(models)
    if "alignment" in stages:
        if cfg is None:
            cfg = eval_config_from_dict(deep_merge(spec.eval_defaults, {"models": str(set_name)}))
        _load_alignment(models, cfg.alignment)
    return models


def parse_stages(stages: Optional[str], set_name: str | Path = "t3bench") -> tuple[str, ...]:
    """A comma-separated stage list (the --stages flags) in canonical order; None = the set's own stages."""
    from metrics.config import STAGES

    if stages is None:
        return load_set_spec(set_name).stages
    wanted = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown or not wanted:
        raise UserError(f"unknown stage(s) {', '.join(unknown) or '(none given)'} (valid: {', '.join(STAGES)})")
    return tuple(s for s in STAGES if s in wanted)


def eval_defaults(set_name: str | Path) -> dict:
    """The set's EvalConfig overrides (CPU-sized protocols for the tiny set)."""
    return load_set_spec(set_name).eval_defaults


# ----------------------------------------------------------------------------------------------
# Fetching (the only code here that uses the network; run with HF_HUB_OFFLINE=0)


# Weight formats: a repo that ships safetensors also ships the same tensors as .bin (pickle); only
# one format is fetched (BLIP-2 FlanT5-XXL: ~49 GB each). Other frameworks' weights are never fetched.
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt")
OTHER_FRAMEWORKS = (".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".gguf")


def hub_listing(repo_id: str, revision: str) -> list[tuple[str, int]]:
    """(path, size in bytes) of every file of a hub repo at a revision (network)."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    return [(f.rfilename, int(f.size or 0)) for f in info.siblings or []]


def choose_files(listing: list[tuple[str, int]], wanted: Optional[list[str]]) -> list[tuple[str, int]]:
    """The files to fetch: `wanted` (the set's fetch_files) when given, else every file in one weight
    format: safetensors where the repo has them (its .bin twins and their index dropped)."""
    if wanted:
        have = dict(listing)
        missing = [w for w in wanted if w not in have]
        if missing:
            raise UserError(f"not in the repository: {', '.join(missing)}")
        return [(w, have[w]) for w in wanted]
    files = [(p, n) for p, n in listing if not p.endswith(OTHER_FRAMEWORKS)]
    if any(p.endswith(".safetensors") for p, _ in files):
        files = [(p, n) for p, n in files if not p.endswith(PICKLE_WEIGHTS) and not p.endswith(".bin.index.json")]
    return files


def _hub_parts(spec: MetricSetSpec) -> list[tuple[str, dict]]:
    """(name, section) of every hub component of a set, nested ones included."""
    out = []
    for key, value in spec.raw.items():
        if not isinstance(value, dict):
            continue
        for name, part in [(key, value)] + [(f"{key}.{k}", v) for k, v in value.items() if isinstance(v, dict)]:
            if part.get("id") is not None and part.get("path") is None:
                out.append((name, part))
    return out


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def fetch_weights(set_name: str | Path, dry_run: bool = False, log=lambda m: print(m, file=sys.stderr),
                  listing=None, download=None) -> list[str]:
    """Download every hub component of a set into the local HF cache; returns what was fetched.

    First lists every component's files (one weight format) and prints their total size, then
    fetches exactly those files. dry_run: list and print only. `listing(repo, revision)` and
    `download(repo, revision=, cache_dir=, allow_patterns=)` default to the hub's (hub_listing,
    huggingface_hub.snapshot_download); a test passes its own, so no test touches the hub.
    """
    from generators.models.loader import hub_cache_dir

    if download is None:
        from huggingface_hub import snapshot_download as download
    listing = listing or hub_listing

    spec = load_set_spec(set_name)
    plan = []
    for name, part in _hub_parts(spec):
        revision = str(part.get("revision", "main"))
        try:
            files = choose_files(listing(part["id"], revision), part.get("fetch_files"))
        except UserError as e:
            raise UserError(f"'{name}' ({part['id']}@{revision}): {e}") from None
        except Exception as e:  # offline, unknown id, bad revision, network: one clear message
            raise UserError(f"cannot list {part['id']} for '{name}' (needs hub access, HF_HUB_OFFLINE=0): "
                            f"{type(e).__name__}: {e}") from e
        plan.append((name, part["id"], revision, files))
        log(f"[metrics] {name}: {part['id']}@{revision}: {len(files)} files, {_gb(sum(n for _, n in files))}")
    log(f"[metrics] total download for metric set {spec.name}: {_gb(sum(n for *_, f in plan for _, n in f))} "
        f"(files already in the cache are not fetched again)")
    done = []
    for name, repo_id, revision, files in plan:
        if dry_run:
            continue
        log(f"[metrics] fetching {repo_id} (revision {revision}) for '{name}'")
        try:
            download(repo_id, revision=revision, cache_dir=hub_cache_dir(), allow_patterns=[p for p, _ in files])
        except Exception as e:  # offline, unknown id, bad revision, network: one clear message
            raise UserError(f"cannot fetch {repo_id} for '{name}' (needs hub access, HF_HUB_OFFLINE=0): "
                            f"{type(e).__name__}: {e}") from e
        done.append(f"{name}: {repo_id}")
    return done
