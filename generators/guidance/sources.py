"""Source providers: what plays the source branch of CFG (the branch the gradient pushes away from).

| kind            | target branch                 | source branch                                        |
| --------------- | ----------------------------- | ---------------------------------------------------- |
| negative-text   | eps(z_t; y_view)              | eps(z_t; negative or empty text)           (SDS)     |
| text-modifier   | eps(z_t; y + tgt modifier)    | stage 1: eps(z_t; ""); stage 2: eps(z_t; y + src modifier)  (SDS-Bridge) |
| ip-adapter      | eps(z_t; y_view)              | eps(z_t; neg text, image = this view's render)  (AnchorDS) |
| controlnet      | eps(z_t; y_view)              | eps(z_t; neg text, control = map of this view's render)    |
| lora            | eps(z_t; y_view)              | eps(z_t; neg or empty text); baseline: LoRA model (VSD)    |

Every provider returns `BranchInputs` for both branches; the score-distillation core, the filter
and the finetune are shared (generators/guidance/guide.py). A provider may add a baseline branch
with its own denoiser (VSD's LoRA model) and a part that trains during the run (`trainer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.cameras import Cameras, view_dependent_prompts
from generators.config import CameraConfig, GuidanceConfig
from generators.guidance.control_maps import depth_map, detector_normal_map, normal_map_from_depth
from generators.guidance.denoiser import BranchInputs, UNetDenoiser
from generators.guidance.finetune import TrainablePart
from generators.guidance.vsd import LoRAModel, VSDDenoiser, camera_condition
from generators.render.types import RenderOutput


@dataclass
class StepContext:
    """What a provider may look at in one optimisation step."""

    step: int
    cameras: Cameras
    images: Tensor  # [B, 3, S, S] the renders at the VAE input size, in [0, 1] (carry the graph)
    render: RenderOutput  # the raw render (depth and alpha for control maps)


class SourceProvider:
    """Base: text-only target with view-dependent prompts; subclasses define the source branch."""

    components: frozenset[str] = frozenset({"base"})  # model-set components this source needs
    trainer: TrainablePart | None = None  # a part of this source that trains during the run

    def __init__(self, models, guidance: GuidanceConfig, camera: CameraConfig, prompt: str):
        self.models = models
        self.cfg = guidance
        self.camera_cfg = camera
        self.prompt = prompt

    # -- helpers shared by all providers ---------------------------------------------------------
    def text(self, prompts: list[str]) -> Tensor:
        return self.models.encode_text(prompts)

    def source_text(self, n: int) -> Tensor:
        text = self.cfg.negative_prompt if self.cfg.source.text == "negative" else ""
        return self.text([text] * n)

    def target_prompts(self, ctx: StepContext) -> list[str]:
        return view_dependent_prompts(self.prompt, ctx.cameras, self.camera_cfg)

    # -- interface ------------------------------------------------------------------------------
    def branches(self, ctx: StepContext) -> tuple[BranchInputs, BranchInputs]:
        raise NotImplementedError

    def mode(self, step: int) -> tuple[str, float]:
        """("cfg", _) for CFG-style distillation, ("difference", weight) for a plain difference,
        ("vsd", _) for CFG against a baseline branch."""
        return "cfg", 1.0

    def baseline(self, ctx: StepContext) -> BranchInputs | None:
        """Inputs of the baseline branch ("vsd" mode only)."""
        return None

    def make_denoiser(self):
        """The noise predictor for this source's branches (one batched UNet call by default)."""
        return UNetDenoiser(self.models.unet, getattr(self.models, "controlnet", None))

    def trainer_loss(self, latents: Tensor, ctx: StepContext, generator: torch.Generator) -> Tensor | None:
        """The loss of `trainer` on this step's latents [B, c, h, w] (None without a trainer)."""
        return None


class NegativeTextSource(SourceProvider):
    """SDS (GaussianDreamer): the source is the negative (or empty) prompt."""

    def branches(self, ctx: StepContext) -> tuple[BranchInputs, BranchInputs]:
        n = len(ctx.cameras)
        return BranchInputs(self.text(self.target_prompts(ctx))), BranchInputs(self.source_text(n))


class TextModifierSource(SourceProvider):
    """SDS-Bridge: stage 1 is SDS of the target prompt against ""; stage 2 is the plain difference
    eps(y + tgt modifier) - eps(y + src modifier), without CFG, weighting or clamp."""

    def stage_two(self, step: int) -> bool:
        return step >= self.cfg.source.bridge.stage_two_start_step

    def branches(self, ctx: StepContext) -> tuple[BranchInputs, BranchInputs]:
        bridge = self.cfg.source.bridge
        n = len(ctx.cameras)
        target = view_dependent_prompts(f"{self.prompt}, {bridge.tgt_modifier}", ctx.cameras, self.camera_cfg)
        if self.stage_two(ctx.step):
            source = view_dependent_prompts(f"{self.prompt}, {bridge.src_modifier}", ctx.cameras, self.camera_cfg)
        else:
            source = [""] * n
        return BranchInputs(self.text(target)), BranchInputs(self.text(source))

    def mode(self, step: int) -> tuple[str, float]:
        if self.stage_two(step):
            return "difference", self.cfg.source.bridge.stage_two_weight
        return "cfg", 1.0


class IPAdapterSource(SourceProvider):
    """AnchorDS with IP-Adapter: the source sees the current render of the same view."""

    components = frozenset({"base", "ip_adapter"})

    def __init__(self, models, guidance, camera, prompt):
        super().__init__(models, guidance, camera, prompt)
        if not getattr(models, "ip_adapter_loaded", False):
            raise RuntimeError("the ip-adapter source needs a model set with an IP-Adapter loaded")
        self._black_embeds: tuple | None = None  # (key, [B, n_images, seq, E]) of target_image "black"

    def encode_images(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] renders in [0, 1] at the render size -> IP-Adapter-Plus features [B, seq, E]
        (penultimate hidden states).

        "clip": one bicubic resize from the render to the encoder's size with antialiasing (PIL's
        bicubic, which CLIPImageProcessor uses, filters when it shrinks; 1024 -> 224 without it
        aliases); "released": bilinear without antialiasing, as the released code resizes.
        """
        enc = self.models.image_encoder
        size = enc.config.image_size
        ip = self.cfg.source.ip_adapter
        if ip.preprocess == "released":
            x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        if ip.preprocess == "clip":
            # CLIPImageProcessor: resize + centre crop (a no-op on our square renders) + mean/std
            proc = self.models.image_processor
            mean = torch.tensor(proc.image_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(proc.image_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x.clamp(0, 1) - mean) / std
        return enc(x.to(enc.dtype), output_hidden_states=True).hidden_states[-2]

    def image_embeds(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, n_images, seq, E]: per view its own render, or all renders (released)."""
        feats = self.encode_images(images)  # [B, seq, E]
        if self.cfg.source.ip_adapter.conditioning == "all-views":
            return feats[None].expand(feats.shape[0], *feats.shape)
        return feats[:, None]

    def black_image_embeds(self, images: Tensor) -> Tensor:
        """IP features of black images shaped like `images` [B, 3, S, S]: the same every step, so
        encoded once per run (no gradient: nothing upstream of a constant image trains)."""
        key = (tuple(images.shape), images.device, images.dtype)
        if self._black_embeds is None or self._black_embeds[0] != key:
            with torch.no_grad():
                self._black_embeds = (key, self.image_embeds(torch.zeros_like(images)))
        return self._black_embeds[1]

    def branches(self, ctx: StepContext) -> tuple[BranchInputs, BranchInputs]:
        ip = self.cfg.source.ip_adapter
        n = len(ctx.cameras)
        grad_to_3d = self.cfg.finetune.enabled and self.cfg.finetune.grad_to_3d
        renders = ctx.render.rgb.permute(0, 3, 1, 2)  # [B, 3, H, W] at the render size, not the VAE's
        images = renders if grad_to_3d else renders.detach()
        with torch.set_grad_enabled(grad_to_3d):
            src_embeds = self.image_embeds(images)
            on = torch.ones(n, device=images.device)
            if ip.target_image == "render":
                tgt_embeds, tgt_on = src_embeds, on
            elif ip.target_image == "black":
                tgt_embeds, tgt_on = self.black_image_embeds(images), on
            else:  # "none": the paper's eps(z_t; y), the IP attention masked out for these views
                tgt_embeds, tgt_on = torch.zeros_like(src_embeds), torch.zeros(n, device=images.device)
        target = BranchInputs(self.text(self.target_prompts(ctx)), tgt_embeds, tgt_on)
        source = BranchInputs(self.source_text(n), src_embeds, on)
        return target, source


class ControlNetSource(SourceProvider):
    """AnchorDS with ControlNet: the source is conditioned on a map of the current render.

    control_map "normal"/"depth" come from the rendered depth (exact); "detector" estimates
    normals from the RGB render alone with the model set's `control_detector` (DPT-Hybrid MiDaS
    + controlnet_aux's MiDaS normal recipe; the released code used NormalBAE instead).
    """

    components = frozenset({"base", "controlnet"})  # + control_detector for control_map "detector"

    def __init__(self, models, guidance, camera, prompt):
        super().__init__(models, guidance, camera, prompt)
        if getattr(models, "controlnet", None) is None:
            raise RuntimeError("the controlnet source needs a model set with a ControlNet")
        if guidance.source.controlnet.control_map == "detector" and getattr(models, "control_detector", None) is None:
            raise RuntimeError(
                "control_map=detector needs the model set's 'control_detector' component (a DPT depth "
                "network) loaded: load_models(..., components={'controlnet', 'control_detector'}); "
                "use control_map=normal (exact, from the rendered depth) otherwise"
            )

    def control_image(self, ctx: StepContext) -> Tensor:
        """The control map [B, 3, S, S] in [0, 1] at the VAE input size S; no gradient flows."""
        cn = self.cfg.source.controlnet
        r = ctx.render
        size = ctx.images.shape[-1]
        with torch.no_grad():
            if cn.control_map == "detector":
                # the released path: the render, detached, through a detector at the detect size
                return detector_normal_map(ctx.images.detach(), self.models.control_detector,
                                           self.models.control_detector_processor, size,
                                           cn.detector_bg_threshold, cn.detector_normal_z)
            if cn.control_map == "normal":
                img = normal_map_from_depth(r.depth.detach(), r.alpha.detach(), ctx.cameras)
            else:
                img = depth_map(r.depth.detach(), r.alpha.detach())
            return F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)

    def branches(self, ctx: StepContext) -> tuple[BranchInputs, BranchInputs]:
        cn = self.cfg.source.controlnet
        n = len(ctx.cameras)
        target = BranchInputs(self.text(self.target_prompts(ctx)))
        source = BranchInputs(self.source_text(n), control_image=self.control_image(ctx), control_scale=cn.scale)
        return target, source


class VSDSource(NegativeTextSource):
    """VSD (ProlificDreamer): the frozen model's CFG of the view-dependent prompt against the
    negative (or empty) text, minus a LoRA model of the renders (view-independent prompt, camera
    c2w) that trains one step per iteration (generators/guidance/vsd.py)."""

    def __init__(self, models, guidance, camera, prompt):
        super().__init__(models, guidance, camera, prompt)
        prediction = models.scheduler.config.prediction_type
        if prediction != "epsilon":
            raise ValueError(f"the lora (VSD) source supports epsilon-prediction models only, not {prediction!r}")
        self.lora = LoRAModel(models.unet, models.scheduler.alphas_cumprod.float(), guidance.source.vsd)
        self.trainer = self.lora.trainer

    def mode(self, step: int) -> tuple[str, float]:
        return "vsd", 1.0

    def baseline(self, ctx: StepContext) -> BranchInputs:
        n = len(ctx.cameras)
        return BranchInputs(self.text([self.prompt] * n), camera=camera_condition(ctx.cameras))

    def make_denoiser(self):
        return VSDDenoiser(super().make_denoiser(), self.lora)

    def trainer_loss(self, latents: Tensor, ctx: StepContext, generator: torch.Generator) -> Tensor:
        base = self.baseline(ctx)
        return self.lora.loss(latents, base.text_embeds, base.camera, generator)


SOURCES: dict[str, type[SourceProvider]] = {
    "negative-text": NegativeTextSource,
    "text-modifier": TextModifierSource,
    "ip-adapter": IPAdapterSource,
    "controlnet": ControlNetSource,
    "lora": VSDSource,
}


def source_components(kind: str) -> frozenset[str]:
    return SOURCES[kind].components


def make_source(models, guidance: GuidanceConfig, camera: CameraConfig, prompt: str) -> SourceProvider:
    return SOURCES[guidance.source.kind](models, guidance, camera, prompt)
