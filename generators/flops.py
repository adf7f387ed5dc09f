"""FLOPs of one optimisation step of a method, counted on the real code path at full size.

The networks are built at their real sizes on the meta device (shapes, no storage: seconds, no
memory), the method's real `Guidance` runs one step on a meta-device render, the loss is
backpropagated and the trainable part (if any) steps, all under PyTorch's FLOP counter
(`torch.utils.flop_counter.FlopCounterMode`: matmuls, convolutions, attention, and their
backward). Nothing here is a hand model of the guidance: change the code and the count changes.

    count = count_method_step("anchords-ipa")     # StepFlops: per module, forward / backward
    count.total, count.by_module()

Networks (from the size profiles of generators/models/tiny.py, built in memory, never written):
    sd15   SD 1.5 UNet, VAE, CLIP ViT-L/14 text, OpenCLIP ViT-H/14 image encoder + IP-Adapter-Plus,
           ControlNet from the UNet (the `sd15-random` set)
    sd21   SD 2.1-base sizes: the same VAE, UNet with linear projections, head widths
           (5, 10, 20, 20) and 1024-wide cross-attention, OpenCLIP ViT-H text encoder (23 layers),
           ControlNet from that UNet

What the counter does not see (no matmul/conv/attention): element-wise work (resizes, the VAE's
posterior sample, losses, Adam) and the rasterizer, which is a CUDA extension; the latter is
added as an explicit estimate (`rasterizer_flops`).
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from generators.models import tiny

META = torch.device("meta")

# SD 2.1-base (stabilityai/stable-diffusion-2-1-base configs): what differs from SD 1.5's sizes
SD21 = dataclasses.replace(
    tiny.SD15, name="sd21", folder="sd21-meta", cross_dim=1024,
    unet=dict(tiny.SD15_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True),
    text=dict(tiny.SD15_TEXT, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
              projection_dim=512, hidden_act="gelu"),
)
# model-set name of a method's preset -> the size profile built here
PROFILE_OF_SET = {"sd15": tiny.SD15, "sd15-random": tiny.SD15, "sd21": SD21}

# LoRA layers (peft's lora_A / lora_B inside the UNet, VSD) are counted in their own row
LORA_LEAVES = ("lora_A", "lora_B")


# ----------------------------------------------------------------------------------------------
# Running real code on meta tensors


class MetaScalars(TorchDispatchMode):
    """Lets real code run on meta tensors: a CPU tensor meeting a meta tensor moves to meta, and a
    scalar read from a meta tensor (`.item()`, `bool(t)`) answers 0. Such reads feed the logs, the
    filter calibration's numbers and the denoiser's "are all IP masks on?" shortcut (answered "no":
    an all-ones mask is applied, element-wise work the counter does not count); none of them
    changes which matmuls, convolutions or attentions run."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = torch.utils._pytree.tree_flatten((args, kwargs))
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        if func is torch.ops.aten._local_scalar_dense.default and tensors[0].device == META:
            return False if tensors[0].dtype == torch.bool else 0
        if any(t.device == META for t in tensors) and any(t.device.type == "cpu" and t.dim() > 0 for t in tensors):
            move = lambda a: a.to(META) if isinstance(a, torch.Tensor) and a.device.type == "cpu" and a.dim() > 0 else a  # noqa: E731
            args, kwargs = torch.utils._pytree.tree_map(move, (args, kwargs))
        return func(*args, **kwargs)


@lru_cache(maxsize=1)
def _tokenizer_dir() -> Path:
    out = Path(tempfile.mkdtemp(prefix="flops-tokenizer-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    tiny._write_tokenizer(out)  # the byte-level tokenizer of the random sets (ids fit any vocabulary)
    return out


def _ip_adapter_state(unet, profile: tiny.SizeProfile) -> dict:
    """IP-Adapter-Plus weights in the original (h94) layout, shapes only (meta tensors)."""
    gen = torch.Generator().manual_seed(0)
    image_proj = {k: torch.empty(v.shape, device=META)
                  for k, v in tiny.resampler_state(gen, profile.vision["hidden_size"], profile).items()}
    ip = {f"{index}.{kv}.weight": torch.empty(hidden, profile.cross_dim, device=META)
          for index, _, hidden in tiny.ip_kv_layers(unet) for kv in ("to_k_ip", "to_v_ip")}
    return {"image_proj": image_proj, "ip_adapter": ip}


def meta_models(profile: tiny.SizeProfile, components: set[str], vae_input_size: int = 512, finetune_layer: str = "up_blocks.3"):
    """A `Models` of full-size networks on the meta device (the loader's object, built in memory)."""
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    from generators.models.codec import VaeCodec
    from generators.models.loader import Models

    with META:
        unet = UNet2DConditionModel(**profile.unet)
        vae = AutoencoderKL(**profile.vae)
        text_encoder = CLIPTextModel(CLIPTextConfig(**profile.text))
    scheduler = DDIMScheduler(**{k: v for k, v in tiny.SCHEDULER.items() if k != "skip_prk_steps"},
                              clip_sample=False)
    models = Models(set_name=f"{profile.name}-meta", device=META, dtype=torch.float32,
                    tokenizer=CLIPTokenizer.from_pretrained(_tokenizer_dir()), text_encoder=text_encoder, unet=unet,
                    scheduler=scheduler, codec=VaeCodec(vae, "sample"), vae=vae, vae_input_size=vae_input_size,
                    finetune_layer=finetune_layer)
    models.pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=models.tokenizer, unet=unet,
                                              scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                              image_encoder=None, requires_safety_checker=False)
    if "ip_adapter" in components:
        with META:
            models.image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**profile.vision))
        unet._load_ip_adapter_weights([_ip_adapter_state(unet, profile)], low_cpu_mem_usage=True)
        size = profile.vision["image_size"]
        models.image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        models.ip_adapter_loaded = True
    if "controlnet" in components:
        extra = {} if profile.controlnet_cond_channels is None else {
            "conditioning_embedding_out_channels": profile.controlnet_cond_channels}
        with META:
            models.controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False, **extra)
    unknown = set(components) - {"base", "ip_adapter", "controlnet"}
    if unknown:
        raise ValueError(f"no meta-device build for component(s) {sorted(unknown)}")
    for module in (unet, vae, text_encoder, models.image_encoder, models.controlnet):
        if module is not None:
            module.requires_grad_(False).eval()
    return models


def meta_render(batch: int, height: int, width: int, num_gaussians: int):
    """A render of `batch` views on the meta device; rgb is a leaf with grad (as the rasterizer's output)."""
    from generators.render.types import RenderOutput

    return RenderOutput(
        rgb=torch.empty(batch, height, width, 3, device=META, requires_grad=True),
        alpha=torch.empty(batch, height, width, 1, device=META),
        depth=torch.empty(batch, height, width, 1, device=META),
        means2d=torch.empty(batch, num_gaussians, 2, device=META),
        radii=torch.empty(batch, num_gaussians, dtype=torch.int32, device=META),
    )


# ----------------------------------------------------------------------------------------------
# The rasterizer: a CUDA extension the counter cannot see, so an explicit estimate

# gsplat's forward per (pixel, Gaussian) pair: conic evaluation, exp, alpha test and blend
RASTER_FLOPS_PER_PAIR_FORWARD = 30
# its backward per pair: gradients of colour, opacity, conic and 2D mean (about twice the forward)
RASTER_FLOPS_PER_PAIR_BACKWARD = 60
# projection of one Gaussian into one view (covariance from scale/rotation, J W Sigma W^T J^T, SH
# degree 0 colour), forward + backward
RASTER_FLOPS_PER_PROJECTION = 1000
# Gaussians blended per pixel before the transmittance cut-off; an upper-end guess for a 100k-300k
# Gaussian object at 1024 px (only pixels the object covers blend any)
RASTER_PAIRS_PER_PIXEL = 100


def gaussian_count() -> int:
    """The Gaussian count of the rasterizer estimate: the full-size random set's initial ball
    (about GaussianDreamer's initial count)."""
    from generators.models.spec import load_set_spec

    return int(load_set_spec("sd15-random").run_defaults["init"]["ball_points"])


def rasterizer_flops(batch: int, height: int, width: int, num_gaussians: int) -> float:
    """Rough forward + backward FLOPs of rasterizing `batch` views: an estimate, not a count."""
    pairs = batch * height * width * RASTER_PAIRS_PER_PIXEL
    return pairs * (RASTER_FLOPS_PER_PAIR_FORWARD + RASTER_FLOPS_PER_PAIR_BACKWARD) + \
        batch * num_gaussians * RASTER_FLOPS_PER_PROJECTION


# ----------------------------------------------------------------------------------------------
# Counting one step


@dataclass
class StepFlops:
    """FLOPs of one optimisation step: {module: flops} for the forward (guidance call) and backward
    (loss.backward + trainer step) phases; `rasterizer` is the estimate above."""

    method: str
    models: str
    forward: dict[str, float]
    backward: dict[str, float]
    rasterizer: float
    settings: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.forward.values()) + sum(self.backward.values()) + self.rasterizer

    def module(self, name: str, phase: str = "both") -> float:
        fwd = self.forward.get(name, 0.0) if phase in ("both", "forward") else 0.0
        bwd = self.backward.get(name, 0.0) if phase in ("both", "backward") else 0.0
        return fwd + bwd


class ModuleFlopCounter(TorchDispatchMode):
    """FLOPs per (phase, module), with PyTorch's FLOP formulas (`flop_counter.flop_registry`).

    Forward ops go to the innermost labelled module running. Backward ops go to the module whose
    forward built the autograd node being executed: when a labelled module returns, the graph
    nodes it created (those between its inputs and its outputs) are labelled with it, innermost
    modules first. Ops of no labelled module go to "other".
    """

    def __init__(self, modules: dict[str, list[torch.nn.Module]]):
        super().__init__()
        self.counts: dict[tuple[str, str], float] = {}
        self.stack: list[str] = []
        self.node_label: dict = {}
        self.handles = []
        for label, mods in modules.items():
            for m in mods:
                self.handles.append(m.register_forward_pre_hook(self._enter(label), with_kwargs=True))
                self.handles.append(m.register_forward_hook(self._exit(label), with_kwargs=True, always_call=True))

    def _enter(self, label: str):
        def hook(module, args, kwargs):
            self.stack.append(label)
        return hook

    def _exit(self, label: str):
        def hook(module, args, kwargs, output):
            self.stack.pop()
            flat_in = torch.utils._pytree.tree_leaves((args, kwargs))
            boundary = {t.grad_fn for t in flat_in if isinstance(t, torch.Tensor) and t.grad_fn is not None}
            todo = [t.grad_fn for t in torch.utils._pytree.tree_leaves(output)
                    if isinstance(t, torch.Tensor) and t.grad_fn is not None]
            while todo:
                node = todo.pop()
                if node is None or node in boundary or node in self.node_label:
                    continue
                self.node_label[node] = label
                todo.extend(n for n, _ in node.next_functions)
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            node = torch._C._current_autograd_node()
            if node is None:
                key = ("forward", self.stack[-1] if self.stack else "other")
            else:
                key = ("backward", self.node_label.get(node, "other"))
            self.counts[key] = self.counts.get(key, 0.0) + float(formula(*args, **kwargs, out_val=out))
        return out

    def phase(self, name: str) -> dict[str, float]:
        return {label: v for (ph, label), v in sorted(self.counts.items()) if ph == name}


def labelled_modules(models) -> dict[str, list[torch.nn.Module]]:
    """The account's rows and the modules each one counts."""
    rows = {"unet": [models.unet], "controlnet": [models.controlnet], "image_encoder": [models.image_encoder],
            "vae_encoder": [models.vae.encoder] if models.vae is not None else [],
            "vae_decode": [models.vae.decoder] if models.vae is not None else [],
            "text_encoder": [models.text_encoder],
            "lora": [m for name, m in models.unet.named_modules() if name.split(".")[-2:-1] and
                     name.split(".")[-2] in LORA_LEAVES]}
    return {k: [m for m in v if m is not None] for k, v in rows.items()}


def count_method_step(method: str, models_name: str | None = None, step: int = 1, overrides: dict | None = None) -> StepFlops:
    """FLOPs of step `step` of `method` at its preset's settings (the paper's: 4 views, 1024 px
    renders, 512 px VAE input), on the full-size networks of its model set.

    One step runs first uncounted (it fills the text-embedding cache, as any run's first step does).
    """
    from generators.cameras import sample_training_cameras
    from generators.methods import resolve_run_config
    from generators.schedules import schedule_value
    from generators.train import build_guidance, required_components, step_generator

    cfg = resolve_run_config(method, prompt="a DSLR photo of a corgi", models=models_name, overrides=overrides)
    profile = PROFILE_OF_SET[cfg.models]
    components = required_components(cfg) - {"shap_e"}
    models = meta_models(profile, components, cfg.guidance.vae_input_size)
    num_gaussians = gaussian_count()
    guidance = build_guidance(cfg, models)
    cam = cfg.camera

    def one_step(s: int) -> tuple[dict, dict]:
        gen = step_generator(cfg.seed, s)
        cams = sample_training_cameras(cam, gen)
        render = meta_render(cam.batch_size, cam.height, cam.width, num_gaussians)
        counter = ModuleFlopCounter(labelled_modules(models))
        try:
            with MetaScalars(), counter:
                g = guidance(render, cams, s, gen)
                loss = schedule_value(cfg.loss.lambda_sds, s) * g.loss_sds
                if g.loss_finetune is not None:
                    loss = loss + schedule_value(cfg.loss.lambda_finetune, s) * g.loss_finetune
                if guidance.trainer is not None:
                    guidance.trainer.zero_grad()
                loss.backward()
                if guidance.trainer is not None:
                    guidance.trainer.step()
        finally:
            counter.remove()
        return counter.phase("forward"), counter.phase("backward")

    one_step(step - 1)
    forward, backward = one_step(step)
    settings = {"views": cam.batch_size, "render": [cam.height, cam.width], "vae_input": cfg.guidance.vae_input_size,
                "num_gaussians": num_gaussians, "step": step}
    return StepFlops(method, cfg.models, forward, backward,
                     rasterizer_flops(cam.batch_size, cam.height, cam.width, num_gaussians), settings)
