"""The pseudo-source: what the source branch believes the clean latent is, and how far that is from
the current render (AnchorDS's L_rec). Computed once per step and shared by the filter, the finetune
loss and the logs.

    x0_hat = (z_t - sqrt(1 - a_t) eps_src) / sqrt(a_t)       with a_t = alpha_bar of the SAMPLED t

(the released code uses alpha_bar of a coarse DDIM grid step instead, defect 5 in
anchords-method.md; we use the exact value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.config import FilterConfig


def predict_x0(z_t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """One-step clean-latent estimate. z_t, eps [B, c, h, w]; alpha_bar [B]."""
    a = alpha_bar.view(-1, 1, 1, 1).to(z_t.dtype)
    return (z_t - (1 - a).sqrt() * eps) / a.sqrt()


def reconstruction_error_latent(x0_hat: Tensor, latents: Tensor) -> Tensor:
    """[B] mean squared error between x0_hat and the render's latents (detached target)."""
    return ((x0_hat - latents.detach()) ** 2).flatten(1).mean(dim=1)


def reconstruction_error_pixel(decoded: Tensor, render: Tensor) -> Tensor:
    """[B] mean squared error between decode(x0_hat) [B,3,H,W] in [0,1] and the render [B,3,H,W]."""
    return ((decoded.clamp(0, 1) - render.detach()) ** 2).flatten(1).mean(dim=1)


def filter_mask(l_rec: Tensor, gamma: float) -> Tensor:
    """[B] 1.0 for views kept (L_rec <= gamma), 0.0 for views whose pseudo-source is unreliable."""
    return (l_rec <= gamma).to(torch.float32)


# ----------------------------------------------------------------------------------------------
# The filter's decision without a decode
#
# The exact filter (the released code's) decodes x0_hat of every view at the VAE input size and
# compares it with the render: at 512 px on SD's VAE that decode costs about 2/3 of an SDS step.
# Around the encoded render z = E(I), to first order,
#     || D(x0_hat) - I ||^2  ~  || D(z) - I ||^2  +  gain * || x0_hat - z ||^2
# (per-element means): the codec's reconstruction error plus its mean-square gain times the latent
# L_rec the guidance already has. Both numbers are properties of the codec, measured once per run
# on fixed probe images (`calibrate_codec`), so the cheap decision keeps the pixel gamma's meaning
# and a resumed run decides exactly as an uninterrupted one.


@dataclass(frozen=True)
class CodecCalibration:
    """pixel L_rec ~= floor + gain * latent L_rec (both per-element means)."""

    floor: float  # the codec's reconstruction MSE on the probes, in [0, 1] pixel units
    gain: float  # mean-square pixel change per mean-square latent change


@torch.no_grad()
def calibrate_codec(codec, size: int, device: torch.device, cfg: FilterConfig) -> CodecCalibration:
    """Measure the codec's floor and gain on `cfg.calibration_probes` smooth random images [P, 3, size, size].

    The gain is taken along the latent difference of two probes (a structured direction, as the
    error of x0_hat is), over a step of `cfg.calibration_step` of that difference.
    """
    p = cfg.calibration_probes
    gen = torch.Generator().manual_seed(cfg.calibration_seed)
    coarse = torch.rand(2 * p, 3, 4, 4, generator=gen)  # smooth colour fields, like renders of blobs
    images = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).to(device)
    z = codec.encode(images, latent_sample="mean")  # [2P, c, h, w]
    a, b = z[:p], z[p:]
    base = codec.decode(a)
    floor = reconstruction_error_pixel(base, images[:p]).mean()
    delta = cfg.calibration_step * (b - a)
    moved = codec.decode(a + delta)
    gain = ((moved - base) ** 2).flatten(1).mean(dim=1).sum() / (delta**2).flatten(1).mean(dim=1).sum()
    return CodecCalibration(float(floor), float(gain))


class FilterDecision:
    """The filter's per-view L_rec in pixel units and its keep mask, by `cfg.space`:

    pixel              decode x0_hat, MSE against the render (exact; the released code's)
    latent             the latent L_rec itself, against a gamma in latent units
    latent-calibrated  floor + gain * latent L_rec (no decode; the codec calibrated once per run)
    """

    def __init__(self, codec, cfg: FilterConfig):
        self.codec = codec
        self.cfg = cfg
        self.calibration: CodecCalibration | None = None

    def l_rec(self, x0_hat: Tensor, latents: Tensor, images: Tensor, l_rec_latent: Tensor,
              decoded: Tensor | None = None) -> Tensor:
        """[B] detached. x0_hat, latents [B, c, h, w]; images [B, 3, S, S]; `decoded`: D(x0_hat) if
        the step already has it (no second decode)."""
        space = self.cfg.space
        if space == "latent":
            return l_rec_latent.detach()
        if space == "latent-calibrated":
            if self.calibration is None:
                self.calibration = calibrate_codec(self.codec, images.shape[-1], images.device, self.cfg)
            return self.calibration.floor + self.calibration.gain * l_rec_latent.detach()
        if space == "pixel":
            with torch.no_grad():
                decoded = self.codec.decode(x0_hat.detach()) if decoded is None else decoded.detach()
                return reconstruction_error_pixel(decoded, images)
        raise ValueError(f"unknown filter space {space!r}")

    def keep(self, l_rec: Tensor) -> Tensor:
        return filter_mask(l_rec, self.cfg.gamma)
