"""One guidance step: renders -> latents -> score distillation -> pseudo-source -> filter / finetune.

This is where a method's pieces meet; every method goes through the same code:
  1. the renders are resized to the VAE input size and encoded (with grad) to latents
  2. the source provider builds the target and source branches
  3. `score_distillation` runs both branches in one UNet call and forms the latent gradient
     (VSD: minus the baseline branch, the LoRA model, in place of the noise)
  4. x0_hat of the source branch is computed once (exact alpha_bar of the sampled t) and gives
     L_rec for the logs, the filter's per-view mask and the finetune loss
  5. the trainable part, if any (`trainer`: the finetuned adapter or VSD's LoRA), gets its loss
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.cameras import Cameras
from generators.config import CameraConfig, GuidanceConfig
from generators.guidance.finetune import AdapterFinetune, TrainablePart
from generators.guidance.pseudo_source import (
    FilterDecision,
    predict_x0,
    reconstruction_error_latent,
    reconstruction_error_pixel,
)
from generators.guidance.score_distillation import distillation_loss, score_distillation
from generators.guidance.sources import StepContext, make_source
from generators.render.types import RenderOutput


@dataclass
class GuidanceStep:
    loss_sds: Tensor  # scalar, graph to the renders
    # scalar, graph to the trainable part (AnchorDS finetune: L_rec; VSD: the LoRA denoising loss);
    # None when nothing trains
    loss_finetune: Tensor | None
    keep: Tensor  # [B] 1 = the view contributed, 0 = filtered out
    l_rec: Tensor | None = None  # [B] the pseudo-source error the filter used (or latent L_rec), detached
    logs: dict = field(default_factory=dict)
    latent_grad: Tensor | None = None  # [B, c, h, w] the latent gradient after the view mask (detached)


def images_for_vae(render: RenderOutput, size: int) -> Tensor:
    """[C, H, W, 3] renders -> [C, 3, size, size], bilinear as GaussianDreamer (1024 -> 512)."""
    x = render.rgb.permute(0, 3, 1, 2)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


class Guidance:
    """Score-distillation guidance of one run (one prompt)."""

    def __init__(self, models, guidance: GuidanceConfig, camera: CameraConfig, prompt: str):
        self.models = models
        self.cfg = guidance
        self.source = make_source(models, guidance, camera, prompt)
        self.denoiser = self.source.make_denoiser()
        if guidance.source.kind == "ip-adapter":
            models.set_ip_adapter_scale(guidance.source.ip_adapter.scale)
        self.alphas_cumprod = models.scheduler.alphas_cumprod.float()
        self.finetune = (
            AdapterFinetune.for_source(models, guidance.source.kind, guidance.finetune)
            if guidance.finetune.enabled else None
        )
        # the one part that trains during the run, whichever it is: the loop zeroes, steps and
        # checkpoints it
        self.trainer: TrainablePart | None = self.finetune if self.finetune is not None else self.source.trainer
        self.anchored = guidance.source.kind in ("ip-adapter", "controlnet")
        self.filter = FilterDecision(models.codec, guidance.filter) if guidance.filter.enabled else None

    def __call__(self, render: RenderOutput, cameras: Cameras, step: int, generator: torch.Generator) -> GuidanceStep:
        cfg = self.cfg
        images = images_for_vae(render, cfg.vae_input_size)  # [B, 3, S, S]
        # fp32 latents whatever the VAE computes in: the SDS loss and L_rec are formed in fp32, and
        # their gradient enters the (autocast) encoder backward from there
        latents = self.models.codec.encode(images, generator=generator, latent_sample=cfg.latent_sample).float()
        ctx = StepContext(step=step, cameras=cameras, images=images, render=render)
        target, source = self.source.branches(ctx)
        mode, weight = self.source.mode(step)
        out = score_distillation(
            self.denoiser, self.alphas_cumprod, latents, target, source, cfg, step, generator,
            mode=mode, difference_weight=weight, source_requires_grad=self.finetune is not None,
            baseline=self.source.baseline(ctx),
        )
        logs = dict(out.logs)
        keep = torch.ones(latents.shape[0], device=latents.device)
        loss_finetune = None
        l_rec_views = None
        if self.anchored or cfg.filter.enabled:
            x0_hat = predict_x0(out.z_t, out.eps_src, out.alpha_bar)  # graph to the adapter if finetuning
            l_rec_latent = reconstruction_error_latent(x0_hat, latents)  # [B]
            logs["l_rec_latent"] = l_rec_latent.mean().item()
            decoded = None
            if self.finetune is not None and cfg.finetune.space == "pixel":
                decoded = self.models.codec.decode(x0_hat)  # with the graph to the adapter
                l_rec_pixel = reconstruction_error_pixel(decoded, images)
                logs["l_rec_pixel"] = l_rec_pixel.mean().item()
                loss_finetune = l_rec_pixel.mean()
            elif self.finetune is not None:
                loss_finetune = l_rec_latent.mean()
            l_rec_views = l_rec_latent.detach()
            if self.filter is not None:
                # the pixel filter reuses the finetune's decode if there is one
                l_rec_views = self.filter.l_rec(x0_hat, latents, images, l_rec_latent, decoded)
                logs["l_rec_filter"] = l_rec_views.mean().item()
                keep = self.filter.keep(l_rec_views).to(latents.device)
        if self.finetune is None and self.trainer is not None:
            loss_finetune = self.source.trainer_loss(latents, ctx, generator)
        logs["keep_rate"] = keep.mean().item()
        grad = out.grad * keep.view(-1, 1, 1, 1)
        loss_sds = distillation_loss(latents, grad)
        return GuidanceStep(loss_sds, loss_finetune, keep, l_rec_views, logs, grad.detach())
