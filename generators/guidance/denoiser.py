"""The noise predictor behind score distillation: target and source branches in ONE batched call.

A branch is described by `BranchInputs` (text embeddings, optional IP-Adapter image embeddings with
a per-view on/off mask, optional ControlNet control image). `UNetDenoiser.predict` stacks the
target and source branches into a batch of 2B, runs the ControlNet on the source half only (its
residuals are zero for the target half), and returns (eps_target, eps_source). When autograd is on
(a finetuned adapter needs eps_source's graph) the two branches run as two calls of B instead, the
target under no_grad, so the backward does not go through B views that need no gradient.

Anything with the same `predict` signature can stand in for the UNet, e.g. an oracle in tests.
A `BaselineDenoiser` also predicts a third, *baseline* branch with other weights (VSD's LoRA model,
generators/guidance/vsd.py); the core's "vsd" mode subtracts it where SDS subtracts the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass
class BranchInputs:
    """Conditioning of one CFG branch for a batch of B views."""

    text_embeds: Tensor  # [B, L, D]
    # IP-Adapter(-Plus) image features, [B, n_images, seq, E] (per view n_images = 1); None = no IP
    image_embeds: Tensor | None = None
    # [B] 1.0 where the IP-Adapter contributes, 0.0 where it is masked out (a text-only branch)
    image_on: Tensor | None = None
    control_image: Tensor | None = None  # [B, 3, H, W] in [0, 1]
    control_scale: float = 0.0
    # [B, 16] flattened 4x4 camera-to-world matrices: the class condition of a camera-conditioned
    # UNet (VSD's LoRA model); None = no camera condition
    camera: Tensor | None = None


class Denoiser(Protocol):
    def predict(self, z_t: Tensor, t: Tensor, target: BranchInputs, source: BranchInputs) -> tuple[Tensor, Tensor]:
        """z_t [B, c, h, w] noisy latents, t [B] timesteps -> (eps_target, eps_source), each [B, c, h, w]."""
        ...


class BaselineDenoiser(Denoiser, Protocol):
    def predict_baseline(self, z_t: Tensor, t: Tensor, baseline: BranchInputs) -> Tensor:
        """z_t [B, c, h, w], t [B] -> eps_baseline [B, c, h, w] (what replaces the noise in "vsd" mode)."""
        ...


class UNetDenoiser:
    """Stable-Diffusion-family UNet (+ IP-Adapter, + ControlNet) as a two-branch noise predictor."""

    def __init__(self, unet, controlnet=None):
        self.unet = unet
        self.controlnet = controlnet

    def predict(self, z_t: Tensor, t: Tensor, target: BranchInputs, source: BranchInputs) -> tuple[Tensor, Tensor]:
        b = z_t.shape[0]
        if torch.is_grad_enabled():
            # only eps_source may carry a graph (to a finetuned adapter): the target branch runs
            # apart under no_grad, so the backward covers the B source views, not all 2B
            with torch.no_grad():
                eps_target = self.call(z_t, t, [target])
            return eps_target, self.call(z_t, t, [source])
        eps = self.call(z_t, t, [target, source])
        return eps[:b], eps[b:]

    def call(self, z_t: Tensor, t: Tensor, branches: list[BranchInputs]) -> Tensor:
        """One UNet call over the branches stacked in the batch: [nB, c, h, w] eps (fp32)."""
        b, n = z_t.shape[0], len(branches)
        dtype = self.unet.dtype
        latents = torch.cat([z_t] * n).to(dtype)  # [nB, c, h, w]
        timesteps = torch.cat([t] * n)
        text = torch.cat([br.text_embeds for br in branches]).to(dtype)
        kwargs: dict = {}

        image = [br.image_embeds for br in branches]
        if any(x is not None for x in image):
            ref = next(x for x in image if x is not None)
            embeds = [x if x is not None else torch.zeros_like(ref) for x in image]
            on = [
                br.image_on if br.image_on is not None else torch.full((b,), float(x is not None), device=ref.device)
                for br, x in zip(branches, image)
            ]
            kwargs["added_cond_kwargs"] = {"image_embeds": [torch.cat(embeds).to(dtype)]}
            on = torch.cat(on)
            if not bool((on == 1).all()):
                # diffusers multiplies each view's IP attention output by its mask: a mask of 0 makes
                # that view exactly text-only, inside the same batched call
                n_images = ref.shape[1]
                h, w = z_t.shape[-2:]
                mask = on.view(-1, 1, 1, 1).expand(n * b, n_images, h, w).to(dtype)
                kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": [mask]}

        controlled = [br.control_image is not None and br.control_scale != 0.0 for br in branches]
        if any(controlled):
            if self.controlnet is None:
                raise RuntimeError("a ControlNet source needs a model set with a ControlNet")
            if sum(controlled) > 1:
                raise NotImplementedError("one controlled branch per UNet call")
            br = branches[controlled.index(True)]
            down, mid = self.controlnet(
                z_t.to(dtype), t, encoder_hidden_states=br.text_embeds.to(dtype),
                controlnet_cond=br.control_image.to(dtype), conditioning_scale=br.control_scale,
                return_dict=False,
            )
            # the other branches get no control: zero residuals
            kwargs["down_block_additional_residuals"] = [
                torch.cat([r if c else torch.zeros_like(r) for c in controlled]) for r in down]
            kwargs["mid_block_additional_residual"] = torch.cat([mid if c else torch.zeros_like(mid) for c in controlled])

        eps = self.unet(latents, timesteps, encoder_hidden_states=text, return_dict=False, **kwargs)[0]
        return eps.float()
