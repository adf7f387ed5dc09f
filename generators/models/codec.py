"""Latent codecs: how rendered RGB becomes the diffusion prior's input space and back.

    codec.encode(rgb)      # rgb [B, 3, H, W] in [0, 1] -> latents [B, C, H/d, W/d]
    codec.decode(latents)  # latents -> rgb [B, 3, H, W] in [0, 1]

`VaeCodec` wraps a Stable Diffusion VAE (latents already multiplied by its scaling factor, as
the UNet expects); `PixelUnshuffleCodec` is for a pixel-space prior that works on 2x2
pixel-unshuffled images (the toy prior). Both are differentiable through `encode`, which is the
path the score-distillation gradient takes back to the 3D model.
"""

from __future__ import annotations

from typing import Literal, Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor


@runtime_checkable
class LatentCodec(Protocol):
    latent_channels: int
    downsample: int  # spatial factor between rgb and latents

    def encode(self, rgb: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:  # [B, 3, H, W] -> [B, C, h, w]
        ...

    def decode(self, latents: Tensor) -> Tensor:  # [B, C, h, w] -> [B, 3, H, W] in [0, 1]
        ...


class VaeCodec:
    """A diffusers AutoencoderKL as a codec.

    `latent_sample="sample"` draws from the posterior (the released AnchorDS / GaussianDreamer
    code: `posterior.sample() * 0.18215`); `"mean"` uses its mean (deterministic).
    """

    def __init__(self, vae, latent_sample: Literal["sample", "mean"] = "sample"):
        if latent_sample not in ("sample", "mean"):
            raise ValueError(f"latent_sample must be 'sample' or 'mean', got {latent_sample!r}")
        self.vae = vae
        self.latent_sample = latent_sample
        self.latent_channels = int(vae.config.latent_channels)
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(vae.config.scaling_factor)

    def encode(self, rgb: Tensor, generator: Optional[torch.Generator] = None, latent_sample: Optional[str] = None) -> Tensor:
        """rgb [B, 3, H, W] in [0, 1] -> scaled latents [B, 4, H/8, W/8] (differentiable)."""
        mode = latent_sample or self.latent_sample
        x = (rgb * 2.0 - 1.0).to(self.vae.dtype)
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample(generator=generator) if mode == "sample" else posterior.mean
        return z * self.scaling_factor

    def decode(self, latents: Tensor) -> Tensor:
        """scaled latents [B, 4, h, w] -> rgb [B, 3, 8h, 8w] in [0, 1]."""
        x = self.vae.decode((latents / self.scaling_factor).to(self.vae.dtype)).sample
        return (x * 0.5 + 0.5).clamp(0.0, 1.0)


class PixelUnshuffleCodec:
    """rgb -> pixel_unshuffle(2 rgb - 1, factor): [B, 3, H, W] -> [B, 3 f^2, H/f, W/f]. Lossless."""

    def __init__(self, factor: int = 2):
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor}")
        self.factor = factor
        self.latent_channels = 3 * factor * factor
        self.downsample = factor

    def encode(self, rgb: Tensor, generator: Optional[torch.Generator] = None, latent_sample: Optional[str] = None) -> Tensor:
        H, W = rgb.shape[-2:]
        if H % self.factor or W % self.factor:
            raise ValueError(f"image size {H}x{W} is not divisible by the codec factor {self.factor}")
        return F.pixel_unshuffle(rgb * 2.0 - 1.0, self.factor)

    def decode(self, latents: Tensor) -> Tensor:
        return (F.pixel_shuffle(latents, self.factor) * 0.5 + 0.5).clamp(0.0, 1.0)
