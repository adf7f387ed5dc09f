"""The one model loader: a model set (see spec.py) -> frozen networks on a device.

    models = load_models("sd15", {"base", "ip_adapter"}, "cuda")
    emb = models.encode_text(["a corgi", ""])          # [2, 77, 768]
    models.unet(z_t, t, encoder_hidden_states=emb, added_cond_kwargs={"image_embeds": [...]})

Real sets and the embedded tiny set go through exactly this code: every network is read from a
folder with diffusers' / transformers' `from_pretrained`, and the IP-Adapter is put into the UNet
with diffusers' own `load_ip_adapter`. Nothing is downloaded here: hub ids must already be in the
local Hugging Face cache (`make weights MODELS=<set>`), otherwise MissingWeightsError.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from generators.errors import MissingWeightsError, UserError
from generators.models.codec import LatentCodec, PixelUnshuffleCodec, VaeCodec
from generators.models.diffusers_logging import quiet_empty_fp32_warning
from generators.models.spec import COMPONENTS, FETCH_ON_REQUEST, SETS_DIR, ComponentSpec, ModelSetSpec, load_set_spec

quiet_empty_fp32_warning()

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class Models:
    """Every frozen network one run needs, plus what was resolved (logged by every run)."""

    set_name: str
    device: torch.device
    dtype: torch.dtype
    tokenizer: Any  # CLIPTokenizer
    text_encoder: Any  # CLIPTextModel
    unet: Any  # UNet2DConditionModel (with IP-Adapter processors when ip_adapter_loaded)
    scheduler: Any  # DDIMScheduler (steps_offset=1, clip_sample=False, set_alpha_to_one=False)
    codec: LatentCodec
    image_encoder: Any = None  # CLIPVisionModelWithProjection
    image_processor: Any = None  # CLIPImageProcessor sized for the image encoder
    ip_adapter_loaded: bool = False
    controlnet: Any = None  # ControlNetModel
    shap_e: Any = None  # ShapEPipeline
    control_detector: Any = None  # DPTForDepthEstimation (relative inverse depth), control_map "detector"
    control_detector_processor: Any = None  # its DPTImageProcessor (input size, mean/std)
    resolved: dict = field(default_factory=dict)  # component -> {id, revision, path}
    finetune_layer: str = "up_blocks.3"
    vae_input_size: int = 512
    vae: Any = None  # AutoencoderKL (also inside codec) or None for pixel-space sets
    pipeline: Any = None  # StableDiffusionPipeline over the same modules (sampling, IP scale)
    spec: Optional[ModelSetSpec] = None
    _text_cache: dict = field(default_factory=dict, repr=False)

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> Tensor:
        """CLIP text embeddings [B, 77, D] (last hidden state), cached per prompt string."""
        if isinstance(prompts, str):
            raise TypeError("encode_text takes a list of prompts")
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            ids = self.tokenizer(
                missing,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            hidden = self.text_encoder(ids)[0]
            for p, h in zip(missing, hidden):
                self._text_cache[p] = h
        return torch.stack([self._text_cache[p] for p in prompts])

    def set_ip_adapter_scale(self, scale: float) -> None:
        """Scale of the image branch in every IP attention processor (diffusers' own setter)."""
        if not self.ip_adapter_loaded:
            raise RuntimeError("no IP-Adapter loaded: load_models(..., components={'ip_adapter'})")
        self.pipeline.set_ip_adapter_scale(scale)


# ----------------------------------------------------------------------------------------------
# Resolving a component to a local folder


def hub_cache_dir() -> Path:
    """The HF hub cache, read from the environment at call time (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def fetch_hint(spec: ModelSetSpec, component: Optional[str] = None) -> str:
    name = spec.name if spec.file.parent == SETS_DIR else str(spec.file)
    if component in FETCH_ON_REQUEST:  # not in the default `make weights` plan: name it
        return f"python -m generators.models.weights {name} --components {component}"
    return f"make weights MODELS={name}"


def _embedded_root(spec: ModelSetSpec) -> Path:
    module_name, func_name = spec.embedded.split(":", 1)
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{spec.file}: 'embedded' names {spec.embedded!r}, which cannot be imported: {e}") from e
    return Path(func())


def local_folders(spec: ModelSetSpec) -> list[Path]:
    """The folders of the set's local (`path:`) components, each once: what `weights_sha256` pins."""
    root = _embedded_root(spec) if spec.embedded else spec.file.parent
    folders = []
    for name in COMPONENTS:
        comp = spec.component(name)
        if comp is not None and comp.path is not None:
            folder = Path(comp.path) if Path(comp.path).is_absolute() else root / comp.path
            if folder.resolve() not in folders:
                folders.append(folder.resolve())
    return folders


def check_weights_pin(spec: ModelSetSpec) -> None:
    """UserError when the set pins its local weights (`weights_sha256`) and they have changed."""
    if not spec.weights_sha256:  # unpinned (most sets): not even the folders are looked up
        return
    from generators.models.fingerprint import check_pin

    name = spec.name if spec.file.parent == SETS_DIR else str(spec.file)
    check_pin(f"model set {spec.name}", spec.file, spec.weights_sha256, local_folders(spec),
              f"python -m generators.models.fingerprint {name}")


def resolve_component(spec: ModelSetSpec, name: str, comp: ComponentSpec, root: Path) -> tuple[Path, dict]:
    """Local folder of a component (repo root or `path`) and the record of what it resolved to."""
    if comp.path is not None:
        folder = Path(comp.path)
        if not folder.is_absolute():
            folder = root / folder
        if not folder.is_dir():
            raise MissingWeightsError(
                f"model set {spec.name}: folder {folder} for '{name}' does not exist "
                f"(fetch or build it: {fetch_hint(spec)})"
            )
        return folder, {"id": comp.id, "revision": "local", "path": str(folder)}
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    try:
        folder = Path(snapshot_download(comp.id, revision=comp.revision, cache_dir=cache, local_files_only=True))
    except Exception as e:  # LocalEntryNotFoundError, bad revision, ...: all mean "not here"
        raise MissingWeightsError(
            f"model set {spec.name}: {comp.id} (revision {comp.revision}) for '{name}' is not in the "
            f"local Hugging Face cache {cache}; fetch it with: {fetch_hint(spec, name)}"
        ) from e
    # the snapshot folder is named by the commit the revision pointed to when it was fetched
    return folder, {"id": comp.id, "revision": folder.name, "path": str(folder)}


def _variant(folder: Path) -> Optional[str]:
    """'fp16' when the folder holds fp16 variant weights (what `make weights` fetches)."""
    return "fp16" if any(folder.glob("*.fp16.safetensors")) or any(folder.glob("*.fp16.bin")) else None


def _freeze(module: Any) -> Any:
    if isinstance(module, torch.nn.Module):
        module.requires_grad_(False)
        module.eval()
    return module


class _Loading:
    """Turns loader errors for missing files into MissingWeightsError (the cause is kept)."""

    def __init__(self, spec: ModelSetSpec, name: str, record: dict):
        self.spec, self.name, self.record = spec, name, record

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, OSError):
            what = self.record["id"] or self.record["path"]
            raise MissingWeightsError(
                f"model set {self.spec.name}: cannot load '{self.name}' from {what} "
                f"(revision {self.record['revision']}, {self.record['path']}): {exc}; "
                f"fetch it with: {fetch_hint(self.spec, self.name)}"
            ) from exc
        return False


# ----------------------------------------------------------------------------------------------


def load_models(
    models: str | Path,
    components: Iterable[str] = ("base",),
    device: str | torch.device = "cpu",
    dtype: Optional[torch.dtype] = None,
    latent_sample: str = "sample",
) -> Models:
    """Load the networks of a model set (`base` always, plus the requested components)."""
    spec = load_set_spec(models)
    wanted = set(components) | {"base"}
    unknown = sorted(wanted - set(COMPONENTS))
    if unknown:
        raise UserError(f"unknown model component(s) {', '.join(unknown)} (valid: {', '.join(COMPONENTS)})")
    for name in sorted(wanted):
        if spec.component(name) is None:
            raise UserError(f"model set {spec.name} ({spec.file}) has no '{name}' component")
    device = torch.device(device)
    if dtype is None:
        dtype = _DTYPES[spec.cuda_dtype] if device.type == "cuda" else torch.float32
    root = _embedded_root(spec) if spec.embedded else spec.file.parent
    check_weights_pin(spec)

    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    resolved: dict[str, dict] = {}
    repo, resolved["base"] = resolve_component(spec, "base", spec.base, root)
    base = repo / spec.base.subfolder if spec.base.subfolder else repo
    with _Loading(spec, "base", resolved["base"]):
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=dtype, variant=_variant(base / "text_encoder"))
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", dtype=dtype, variant=_variant(base / "unet"))
        # AnchorDS samples timesteps and x0 estimates with DDIM built from the base config
        scheduler = DDIMScheduler.from_config(
            DDIMScheduler.load_config(base, subfolder="scheduler"), steps_offset=1, clip_sample=False, set_alpha_to_one=False
        )
        vae = None
        if spec.codec.kind == "vae":
            vae = _freeze(AutoencoderKL.from_pretrained(base, subfolder="vae", dtype=dtype, variant=_variant(base / "vae")))
    codec: LatentCodec = VaeCodec(vae, latent_sample) if vae is not None else PixelUnshuffleCodec(spec.codec.factor)

    out = Models(
        set_name=spec.name,
        device=device,
        dtype=dtype,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=scheduler,
        codec=codec,
        resolved=resolved,
        finetune_layer=spec.finetune_layer,
        vae_input_size=spec.vae_input_size,
        vae=vae,
        spec=spec,
    )
    from diffusers import StableDiffusionPipeline

    # a pipeline view over the same modules: IP-Adapter loading and scale, sampling for debugging
    # (vae=None for pixel-space sets such as `toy`: the IP-Adapter loading needs only the UNet)
    out.pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    out.pipeline.set_progress_bar_config(disable=True)

    if "ip_adapter" in wanted:
        _load_ip_adapter(out, spec, root, dtype)
    if "controlnet" in wanted:
        from diffusers import ControlNetModel

        repo, resolved["controlnet"] = resolve_component(spec, "controlnet", spec.controlnet, root)
        folder = repo / spec.controlnet.subfolder if spec.controlnet.subfolder else repo
        with _Loading(spec, "controlnet", resolved["controlnet"]):
            out.controlnet = ControlNetModel.from_pretrained(folder, dtype=dtype, variant=_variant(folder))
    if "shap_e" in wanted:
        from diffusers import ShapEPipeline

        repo, resolved["shap_e"] = resolve_component(spec, "shap_e", spec.shap_e, root)
        folder = repo / spec.shap_e.subfolder if spec.shap_e.subfolder else repo
        with _Loading(spec, "shap_e", resolved["shap_e"]):
            out.shap_e = ShapEPipeline.from_pretrained(folder, dtype=dtype, variant=_variant(folder / "prior"))
        out.shap_e.set_progress_bar_config(disable=True)
        for module in out.shap_e.components.values():
            _freeze(module)
        out.shap_e.to(device)
    if "control_detector" in wanted:
        _load_control_detector(out, spec, root, dtype)

    for module in (text_encoder, unet, vae, out.image_encoder, out.controlnet, out.control_detector):
        if module is not None:
            _freeze(module).to(device)
    return out


def _load_control_detector(out: Models, spec: ModelSetSpec, root: Path, dtype: torch.dtype) -> None:
    """The depth network of control_map "detector" and its image processor, from one folder."""
    from transformers import DPTForDepthEstimation, DPTImageProcessor

    comp = spec.control_detector
    repo, out.resolved["control_detector"] = resolve_component(spec, "control_detector", comp, root)
    folder = repo / comp.subfolder if comp.subfolder else repo
    with _Loading(spec, "control_detector", out.resolved["control_detector"]):
        out.control_detector = DPTForDepthEstimation.from_pretrained(folder, dtype=dtype, variant=_variant(folder))
        out.control_detector_processor = DPTImageProcessor.from_pretrained(folder)


def _load_ip_adapter(out: Models, spec: ModelSetSpec, root: Path, dtype: torch.dtype) -> None:
    """IP-Adapter(-Plus) weights INTO the UNet via diffusers' load_ip_adapter, plus its encoder."""
    from transformers import CLIPVisionModelWithProjection

    comp = spec.ip_adapter
    repo, out.resolved["ip_adapter"] = resolve_component(spec, "ip_adapter", comp, root)
    out.resolved["ip_adapter"]["weight_name"] = comp.weight_name
    encoder_dir = repo / (comp.image_encoder or Path(comp.subfolder, "image_encoder"))
    with _Loading(spec, "ip_adapter", out.resolved["ip_adapter"]):
        weight = repo / comp.subfolder / comp.weight_name
        if not weight.is_file():
            raise FileNotFoundError(f"IP-Adapter weight file {weight} is missing")
        out.image_encoder = CLIPVisionModelWithProjection.from_pretrained(encoder_dir, dtype=dtype, variant=_variant(encoder_dir))
        # registered first so load_ip_adapter does not look for an encoder itself; it then
        # creates the matching CLIPImageProcessor as the pipeline's feature_extractor
        out.pipeline.register_modules(image_encoder=out.image_encoder)
        out.pipeline.load_ip_adapter(
            str(repo),
            subfolder=comp.subfolder,
            weight_name=comp.weight_name,
            image_encoder_folder=None,
            local_files_only=True,
        )
    out.image_processor = out.pipeline.feature_extractor
    out.ip_adapter_loaded = True
    if any(p.dtype != dtype for p in out.unet.parameters()):
        out.unet.to(dtype=dtype)  # the new IP projections follow the UNet's dtype
