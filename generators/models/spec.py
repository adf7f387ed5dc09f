"""Model sets: a YAML file naming every network a method needs (hub id + revision, or a folder).

    spec = load_set_spec("sd15")              # generators/models/sets/sd15.yaml
    spec = load_set_spec("path/to/my.yaml")   # any file

A set file looks like this (every key but `base` optional; unknown keys are errors):

    name: sd15
    base:       {id: stable-diffusion-v1-5/stable-diffusion-v1-5, revision: main}
    ip_adapter: {id: h94/IP-Adapter, subfolder: models,
                 weight_name: ip-adapter-plus_sd15.safetensors,
                 image_encoder: models/image_encoder}
    controlnet: {id: lllyasviel/control_v11p_sd15_normalbae}
    control_detector: {id: Intel/dpt-hybrid-midas}   # control_map "detector" only
    shap_e:     {id: openai/shap-e}
    codec: {kind: vae}                 # or {kind: pixel-unshuffle, factor: 2}
    vae_input_size: 512
    finetune_layer: up_blocks.3
    cuda_dtype: float16
    run_defaults: {...}                # nested RunConfig overrides suited to this set
    method_run_defaults:               # per method, after run_defaults; a method also takes
      vsd: {...}                       # the entries of the presets it `extends`
    version: prior-step-12000          # optional, with weights_sha256: pins the weights of the
    weights_sha256: <64 hex>           #   local folders (generators/models/fingerprint.py)
    embedded: module:function          # optional: returns the folder that relative `path:`s
                                       # resolve against, building it on demand (tiny set); one of
                                       # EMBEDDED_BUILDERS only: a set file names no other code

A component given as `path:` is a local folder (relative paths resolve against `embedded`'s
folder when the set has one, else against the yaml's folder); otherwise `id` + `revision` name a
Hugging Face repo that must already be in the local HF cache (`make weights MODELS=<set>`).
Components in FETCH_ON_REQUEST are needed by few runs only, so `make weights` fetches them only
when asked by name (`python -m generators.models.weights <set> --components control_detector`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from generators.errors import UserError
from generators.untrusted import brief, safe_load

SETS_DIR = Path(__file__).resolve().parent / "sets"
COMPONENTS = ("base", "ip_adapter", "controlnet", "shap_e", "control_detector")
# the depth network behind control_map "detector" (~0.5 GB): fetched only when named
FETCH_ON_REQUEST = ("control_detector",)
CODEC_KINDS = ("vae", "pixel-unshuffle")
CUDA_DTYPES = ("float16", "bfloat16", "float32")
# the only functions a set's `embedded:` may name (they build the random-weight sets on demand)
EMBEDDED_BUILDERS = frozenset({"generators.models.tiny:ensure_tiny_set", "generators.models.tiny:ensure_sd15_random_set",
                               "generators.models.tiny:ensure_sd21_random_set"})


@dataclass
class ComponentSpec:
    """One network (or folder of networks) of a model set."""

    id: Optional[str] = None  # hub repo id "org/name"
    revision: str = "main"  # branch, tag or 40-hex commit
    subfolder: str = ""  # folder inside the repo (or inside `path`)
    path: Optional[str] = None  # local folder override; wins over `id`
    # IP-Adapter only
    weight_name: Optional[str] = None  # the adapter file inside `subfolder`
    image_encoder: Optional[str] = None  # image-encoder folder, relative to the repo root

    def describe(self) -> str:
        if self.path is not None:
            return f"local folder {self.path}"
        return f"{self.id} (revision {self.revision})"


@dataclass
class CodecSpec:
    kind: str = "vae"
    factor: int = 2  # pixel-unshuffle only


@dataclass
class ModelSetSpec:
    name: str
    file: Path  # the yaml this set came from
    base: ComponentSpec
    ip_adapter: Optional[ComponentSpec] = None
    controlnet: Optional[ComponentSpec] = None
    shap_e: Optional[ComponentSpec] = None
    control_detector: Optional[ComponentSpec] = None  # DPTForDepthEstimation folder + its image processor
    codec: CodecSpec = field(default_factory=CodecSpec)
    vae_input_size: int = 512
    finetune_layer: str = "up_blocks.3"
    cuda_dtype: str = "float16"
    run_defaults: dict = field(default_factory=dict)
    method_run_defaults: dict = field(default_factory=dict)  # method name -> RunConfig overrides
    embedded: Optional[str] = None
    description: str = ""
    # the weights in the set's local folders: generators/models/fingerprint.py
    version: str = ""
    weights_sha256: str = ""

    @property
    def identity(self) -> str:
        """The set as runs name it: `toy`, or `toy@<version>` (hashed into every run id)."""
        from generators.models.fingerprint import identity

        return identity(self.name, self.version)

    def component(self, name: str) -> Optional[ComponentSpec]:
        if name not in COMPONENTS:
            raise UserError(f"unknown model component {name!r} (valid: {', '.join(COMPONENTS)})")
        return getattr(self, name)


_TOP_KEYS = {f.name for f in dataclasses.fields(ModelSetSpec)} - {"file"}
_COMPONENT_KEYS = {"id", "revision", "subfolder", "path"}
_IP_KEYS = _COMPONENT_KEYS | {"weight_name", "image_encoder"}


def available_sets(sets_dir: Path = SETS_DIR) -> list[str]:
    """Names of the sets shipped in `sets_dir` (default generators/models/sets/)."""
    return sorted(p.stem for p in sets_dir.glob("*.yaml"))


def set_file(models: str | Path, sets_dir: Path = SETS_DIR, kind: str = "model set") -> Path:
    """The yaml file for a set name (in `sets_dir`) or path; UserError listing the valid names otherwise."""
    p = Path(models)
    if p.suffix in (".yaml", ".yml"):  # an explicit file of one's own
        if not p.is_file():
            raise UserError(f"{kind} file {p} does not exist")
        return p.resolve()
    # otherwise a shipped set by name, never a path (`../x` would load any x.yaml)
    if str(models) not in available_sets(sets_dir):
        valid = ", ".join(available_sets(sets_dir))
        raise UserError(f"unknown {kind} {brief(str(models))} (valid: {valid}, or a path ending in .yaml)")
    return sets_dir / f"{models}.yaml"


def _fail(file: Path, msg: str) -> UserError:
    return UserError(f"{file}: {msg}")


def _check_keys(file: Path, where: str, data: Any, allowed: set[str]) -> dict:
    if not isinstance(data, dict):
        raise _fail(file, f"'{where}' must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _fail(
            file,
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(f'{where}.{k}' if where else k) for k in unknown)}"
            f" (valid: {', '.join(sorted(allowed))})",
        )
    return data


def _string(file: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(file, f"'{key}' must be a non-empty string, got {brief(value)}")
    return value


def _parse_component(file: Path, name: str, data: Any) -> ComponentSpec:
    allowed = _IP_KEYS if name == "ip_adapter" else _COMPONENT_KEYS
    data = _check_keys(file, name, data, allowed)
    kwargs = {k: _string(file, f"{name}.{k}", v) if k != "subfolder" else str(v) for k, v in data.items()}
    if "revision" in data:
        kwargs["revision"] = str(data["revision"])
    spec = ComponentSpec(**kwargs)
    if spec.id is None and spec.path is None:
        raise _fail(file, f"'{name}' needs an 'id' (hub repo) or a 'path' (local folder)")
    if name == "ip_adapter" and spec.weight_name is None:
        raise _fail(file, "'ip_adapter' needs 'weight_name' (the adapter file, e.g. ip-adapter-plus_sd15.safetensors)")
    return spec


def _parse_codec(file: Path, data: Any) -> CodecSpec:
    data = _check_keys(file, "codec", data, {"kind", "factor"})
    kind = data.get("kind", "vae")
    if kind not in CODEC_KINDS:
        raise _fail(file, f"'codec.kind' is {brief(kind)}, expected one of {', '.join(CODEC_KINDS)}")
    factor = data.get("factor", 2)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise _fail(file, f"'codec.factor' must be a positive integer, got {brief(factor)}")
    if kind == "vae" and "factor" in data:
        raise _fail(file, "'codec.factor' applies to kind pixel-unshuffle only")
    return CodecSpec(kind=kind, factor=factor)


def _check_run_defaults(file: Path, data: Any) -> dict:
    # Validated against RunConfig now so a typo fails when the set loads, not mid-run.
    from generators.config import ConfigError, config_from_dict

    if not isinstance(data, dict):
        raise _fail(file, "'run_defaults' must be a mapping of RunConfig overrides")
    try:
        config_from_dict(data)
    except ConfigError as e:
        raise _fail(file, f"run_defaults: {e}") from None
    return data


def parse_set(data: Any, file: Path) -> ModelSetSpec:
    """Build a ModelSetSpec from parsed yaml, strictly (UserError naming `file` and the key)."""
    data = _check_keys(file, "", data if data is not None else {}, _TOP_KEYS)
    if "base" not in data:
        raise _fail(file, "a model set needs a 'base' component (the Stable Diffusion folder)")
    spec = ModelSetSpec(name=str(data.get("name", file.stem)), file=file, base=_parse_component(file, "base", data["base"]))
    for name in COMPONENTS[1:]:
        if data.get(name) is not None:
            setattr(spec, name, _parse_component(file, name, data[name]))
    if "codec" in data:
        spec.codec = _parse_codec(file, data["codec"])
    if "vae_input_size" in data:
        v = data["vae_input_size"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 8:
            raise _fail(file, f"'vae_input_size' must be an integer >= 8, got {brief(v)}")
        spec.vae_input_size = v
    if "finetune_layer" in data:
        spec.finetune_layer = _string(file, "finetune_layer", data["finetune_layer"])
    if "cuda_dtype" in data:
        if data["cuda_dtype"] not in CUDA_DTYPES:
            raise _fail(file, f"'cuda_dtype' is {brief(data['cuda_dtype'])}, expected one of {', '.join(CUDA_DTYPES)}")
        spec.cuda_dtype = data["cuda_dtype"]
    if "run_defaults" in data:
        spec.run_defaults = _check_run_defaults(file, data["run_defaults"] or {})
    if "method_run_defaults" in data:
        per = data["method_run_defaults"] or {}
        if not isinstance(per, dict):
            raise _fail(file, "'method_run_defaults' must map method names to RunConfig overrides")
        spec.method_run_defaults = {str(m): _check_run_defaults(file, v or {}) for m, v in per.items()}
    if "embedded" in data:
        emb = _string(file, "embedded", data["embedded"])
        if emb not in EMBEDDED_BUILDERS:  # a set file is data: it may name our builders, not any code
            raise _fail(file, f"'embedded' must be one of the project's builders ({', '.join(sorted(EMBEDDED_BUILDERS))}), "
                              f"got {brief(emb)}")
        spec.embedded = emb
    if "description" in data:
        spec.description = str(data["description"])
    from generators.models.fingerprint import parse_pin

    spec.version, spec.weights_sha256 = parse_pin(file, data)
    if spec.weights_sha256 and not any(spec.component(c) is not None and spec.component(c).path is not None
                                       for c in COMPONENTS):
        raise _fail(file, "'weights_sha256' pins local folders, but no component has a 'path'")
    return spec


def load_set_spec(models: str | Path) -> ModelSetSpec:
    """Read and validate a model set by name (shipped sets) or yaml path."""
    file = set_file(models)
    try:
        data = safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise _fail(file, f"not valid YAML: {e}") from None
    return parse_set(data, file)
