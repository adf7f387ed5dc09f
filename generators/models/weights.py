"""`make weights`: fetch exactly the files a model set needs into the Hugging Face cache.

    python -m generators.models.weights sd15 [--dry-run] [--components base,ip_adapter]

This is the only code in the project that downloads. For every hub component of the set it
lists the repo once, picks per weight folder the fp16 safetensors when the repo has them (else
full-precision safetensors, else .bin), and calls `huggingface_hub.snapshot_download` with
exactly those files. The loader later finds them offline (it reads fp16 variants and upcasts on
CPU). `--dry-run` prints the plan without touching the network. Components in
spec.FETCH_ON_REQUEST (the control_map "detector" depth network) are fetched only when named
with `--components`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Optional

from generators.errors import UserError, report_error
from generators.models.spec import COMPONENTS, FETCH_ON_REQUEST, ComponentSpec, ModelSetSpec, load_set_spec

# weight files of one folder, most preferred first (fp16 halves the download)
_WEIGHT_SUFFIXES = (".fp16.safetensors", ".safetensors", ".fp16.bin", ".bin")
# transformers modules store `model.*`, diffusers modules `diffusion_pytorch_model.*`
_TRANSFORMERS_STEM = "model"
_DIFFUSERS_STEM = "diffusion_pytorch_model"
# pickled weights of transformers modules are named `pytorch_model.*` instead (older hub repos,
# e.g. Intel/dpt-hybrid-midas, may have only those)
_BIN_STEMS = {_TRANSFORMERS_STEM: "pytorch_model"}


@dataclass
class WeightFolder:
    folder: str  # repo-relative folder ("" = root)
    stem: str  # weight file name without suffix

    def candidates(self) -> list[str]:
        bin_stem = _BIN_STEMS.get(self.stem, self.stem)
        return [_join(self.folder, (bin_stem if s.endswith(".bin") else self.stem) + s) for s in _WEIGHT_SUFFIXES]


@dataclass
class Fetch:
    """The files of one component: exact paths plus weight folders to choose a file in."""

    component: str
    repo_id: str
    revision: str
    files: list[str] = field(default_factory=list)  # exact paths or glob patterns
    weights: list[WeightFolder] = field(default_factory=list)


def _join(*parts: str) -> str:
    return str(PurePosixPath(*[p for p in parts if p])) if any(parts) else ""


def _module(prefix: str, stem: str, fetch: Fetch) -> None:
    fetch.files.append(_join(prefix, "config.json"))
    fetch.weights.append(WeightFolder(prefix, stem))


def plan_component(name: str, comp: ComponentSpec, spec: ModelSetSpec) -> Optional[Fetch]:
    """What to fetch for one component (None for a local `path:` component)."""
    if comp.path is not None or comp.id is None:
        return None
    f = Fetch(name, comp.id, comp.revision)
    sub = comp.subfolder
    if name == "base":
        f.files += [_join(sub, "model_index.json"), _join(sub, "scheduler", "*.json"), _join(sub, "tokenizer", "*")]
        _module(_join(sub, "text_encoder"), _TRANSFORMERS_STEM, f)
        _module(_join(sub, "unet"), _DIFFUSERS_STEM, f)
        if spec.codec.kind == "vae":
            _module(_join(sub, "vae"), _DIFFUSERS_STEM, f)
    elif name == "ip_adapter":
        f.files.append(_join(sub, comp.weight_name))
        _module(comp.image_encoder or _join(sub, "image_encoder"), _TRANSFORMERS_STEM, f)
    elif name == "controlnet":
        _module(sub, _DIFFUSERS_STEM, f)
    elif name == "shap_e":
        f.files += [_join(sub, "model_index.json"), _join(sub, "scheduler", "*.json"), _join(sub, "tokenizer", "*")]
        _module(_join(sub, "text_encoder"), _TRANSFORMERS_STEM, f)
        _module(_join(sub, "prior"), _DIFFUSERS_STEM, f)
        _module(_join(sub, "shap_e_renderer"), _DIFFUSERS_STEM, f)
    elif name == "control_detector":
        f.files.append(_join(sub, "preprocessor_config.json"))  # DPTImageProcessor: size, mean/std
        _module(sub, _TRANSFORMERS_STEM, f)
    return f


def plan(spec: ModelSetSpec, components: Optional[set[str]] = None) -> list[Fetch]:
    """The fetches of `components` (default: every component of the set but FETCH_ON_REQUEST)."""
    out = []
    for name in COMPONENTS:
        comp = spec.component(name)
        wanted = name not in FETCH_ON_REQUEST if components is None else name in components
        if comp is None or not wanted:
            continue
        fetch = plan_component(name, comp, spec)
        if fetch is not None:
            out.append(fetch)
    return out


def choose_files(fetch: Fetch, repo_files: dict[str, int]) -> list[str]:
    """Exact file list: the patterns that match plus, per weight folder, the best file present."""
    import fnmatch

    chosen: list[str] = []
    for pattern in fetch.files:
        hits = sorted(p for p in repo_files if fnmatch.fnmatchcase(p, pattern))
        if not hits:
            raise UserError(f"{fetch.repo_id}@{fetch.revision} has no file matching {pattern!r}")
        chosen += hits
    for wf in fetch.weights:
        present = [c for c in wf.candidates() if c in repo_files]
        if not present:
            raise UserError(f"{fetch.repo_id}@{fetch.revision} has no weights in {wf.folder or '.'}/ (looked for {', '.join(wf.candidates())})")
        chosen.append(present[0])
    return sorted(dict.fromkeys(chosen))


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fetch_set(spec: ModelSetSpec, components: Optional[set[str]] = None) -> dict[str, str]:
    """Download the plan into the HF cache; returns component -> snapshot folder."""
    from huggingface_hub import HfApi, snapshot_download

    from generators.models.loader import hub_cache_dir

    api = HfApi()
    done = {}
    for fetch in plan(spec, components):
        tree = api.list_repo_tree(fetch.repo_id, revision=fetch.revision, recursive=True)
        sizes = {e.path: int(getattr(e, "size", 0) or 0) for e in tree if hasattr(e, "size")}
        files = choose_files(fetch, sizes)
        total = sum(sizes[f] for f in files)
        print(f"[weights] {fetch.component}: {fetch.repo_id}@{fetch.revision}: {len(files)} files, {_human(total)}", flush=True)
        for f in files:
            print(f"    {_human(sizes[f]):>9}  {f}", flush=True)
        folder = snapshot_download(fetch.repo_id, revision=fetch.revision, allow_patterns=files, cache_dir=hub_cache_dir())
        print(f"[weights] {fetch.component}: done -> {folder}", flush=True)
        done[fetch.component] = folder
    return done


def describe_plan(spec: ModelSetSpec, components: Optional[set[str]] = None) -> str:
    lines = [f"model set {spec.name} ({spec.file}): would fetch"]
    for fetch in plan(spec, components):
        lines.append(f"  {fetch.component}: {fetch.repo_id} (revision {fetch.revision})")
        lines += [f"    {p}" for p in fetch.files]
        lines += [f"    {wf.folder or '.'}/: first present of {', '.join(PurePosixPath(c).name for c in wf.candidates())}" for wf in fetch.weights]
    local = [n for n in COMPONENTS if spec.component(n) is not None and spec.component(n).path is not None]
    if local:
        lines.append(f"  local folders (nothing to fetch): {', '.join(local)}")
    on_request = [n for n in FETCH_ON_REQUEST if spec.component(n) is not None and spec.component(n).path is None
                  and (components is None or n not in components)]
    for n in on_request:
        lines.append(f"  not fetched unless named (--components {n}): {n}: {spec.component(n).describe()}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generators.models.weights", description="Fetch a model set's weights from the Hugging Face hub.")
    parser.add_argument("models", help="model set name (sd15, sd21, ...) or a set yaml")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched (offline)")
    parser.add_argument("--components", default=None, help=f"comma-separated subset of {','.join(COMPONENTS)}")
    args = parser.parse_args(argv)
    try:
        spec = load_set_spec(args.models)
        components = None
        if args.components:
            components = {c.strip() for c in args.components.split(",") if c.strip()}
            bad = sorted(components - set(COMPONENTS))
            if bad:
                raise UserError(f"unknown component(s) {', '.join(bad)} (valid: {', '.join(COMPONENTS)})")
        if args.dry_run:
            print(describe_plan(spec, components))
        else:
            fetch_set(spec, components)
    except UserError as e:
        return report_error(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
