"""The pseudo-source: what the source branch believes the clean latent is, and how far that is from
the current render (AnchorDS's L_rec). Computed once per step and shared by the filter, the finetune
loss and the logs.

    x0_hat = (z_t - sqrt(1 - a_t) eps_src) / sqrt(a_t)       with a_t = alpha_bar of the SAMPLED t

(the released code uses alpha_bar of a coarse DDIM grid step instead, defect 5 in
anchords-method.md; we use the exact value).
"""

from __future__ import annotations

import torch
from torch import Tensor


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
