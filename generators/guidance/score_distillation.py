"""The one score-distillation computation every method shares.

    z_t     = sqrt(a_t) z + sqrt(1 - a_t) eps                      a_t = alpha_bar of the sampled t
    eps_hat = eps_tgt + s (eps_tgt - eps_src)      threestudio convention (s = 100 in the recipes)
            = eps_src + s (eps_tgt - eps_src)      diffusers convention
    grad    = w(t) (eps_hat - eps)                 w(t) = 1 - a_t  ("sds") or 1 ("uniform")
            = nan_to_num, then clamped element-wise to +-grad_clip(step)
    loss    = 0.5 || z - (z - grad).detach() ||^2 / B               so d loss / d z = grad / B
              (after the filter's per-view mask, see `distillation_loss`)

Methods differ only in what plays eps_src (see `sources.py`). The decomposition logged per step:
target term = eps_tgt - eps (pulls toward p(z | y)); variance term = eps_tgt - eps_src (pushes away
from the source). SDS-Bridge's second stage uses the plain difference (`mode="difference"`).

VSD (`mode="vsd"`) is the same computation with a learned baseline in place of the noise:

    grad    = w(t) (eps_hat - eps_baseline)    eps_baseline = the denoiser's `predict_baseline`
                                               (VSD: the LoRA model of the renders, generators/guidance/vsd.py)

so CFG, weighting, nan_to_num and clamp stay here, once, for every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from generators.config import GuidanceConfig
from generators.guidance.denoiser import BranchInputs, Denoiser
from generators.schedules import schedule_value


@dataclass
class DistillationOutput:
    grad: Tensor  # [B, c, h, w] the latent gradient after weighting and clamping (before view masks)
    t: Tensor  # [B] integer timesteps
    noise: Tensor  # [B, c, h, w]
    z_t: Tensor  # [B, c, h, w]
    eps_tgt: Tensor  # [B, c, h, w] (detached)
    eps_src: Tensor  # [B, c, h, w] (carries a graph when the source needs one, e.g. for finetuning)
    alpha_bar: Tensor  # [B] alpha_bar of each sampled t
    logs: dict = field(default_factory=dict)
    eps_baseline: Tensor | None = None  # [B, c, h, w] (detached) in "vsd" mode, else None


def sample_timesteps(cfg: GuidanceConfig, step: int, batch: int, num_train_timesteps: int,
                     generator: torch.Generator) -> Tensor:
    """t ~ U{floor(t_min T) .. floor(t_max T)} independently per view (threestudio's randint)."""
    t_min = int(num_train_timesteps * schedule_value(cfg.t_min, step))
    t_max = int(num_train_timesteps * schedule_value(cfg.t_max, step))
    if t_max < t_min:
        raise ValueError(f"guidance.t_max ({t_max}) is below guidance.t_min ({t_min}) at step {step}")
    return torch.randint(t_min, t_max + 1, (batch,), generator=generator)


def combine_cfg(eps_tgt: Tensor, eps_src: Tensor, scale: float, convention: str) -> Tensor:
    if convention == "threestudio":
        return eps_tgt + scale * (eps_tgt - eps_src)
    if convention == "diffusers":
        return eps_src + scale * (eps_tgt - eps_src)
    raise ValueError(f"unknown CFG convention {convention!r}")


def effective_diffusers_scale(scale: float, convention: str) -> float:
    """The same guidance written in the diffusers convention (what most papers call 'CFG')."""
    return scale + 1.0 if convention == "threestudio" else scale


def score_distillation(
    denoiser: Denoiser,
    alphas_cumprod: Tensor,
    latents: Tensor,
    target: BranchInputs,
    source: BranchInputs,
    cfg: GuidanceConfig,
    step: int,
    generator: torch.Generator,
    *,
    mode: str = "cfg",
    difference_weight: float = 1.0,
    source_requires_grad: bool = False,
    baseline: BranchInputs | None = None,
) -> DistillationOutput:
    """One score-distillation evaluation on `latents` [B, c, h, w] (which carry the graph to 3D).

    `source_requires_grad`: run the UNet with autograd on so eps_src keeps a graph to whatever
    trainable weights it depends on (the finetuned adapter layer); the SDS gradient itself is
    always computed from detached predictions.
    `baseline`: the inputs of the baseline branch ("vsd" mode only; `denoiser` must then be a
    `BaselineDenoiser`).
    """
    b = latents.shape[0]
    device = latents.device
    t = sample_timesteps(cfg, step, b, alphas_cumprod.shape[0], generator).to(device)
    noise = torch.randn(latents.shape, generator=generator).to(device=device, dtype=latents.dtype)
    a = alphas_cumprod.to(device)[t].float()  # [B]
    a4 = a.view(-1, 1, 1, 1)
    with torch.no_grad():
        z_t = a4.sqrt() * latents.detach() + (1 - a4).sqrt() * noise
    with torch.set_grad_enabled(source_requires_grad):
        eps_tgt, eps_src = denoiser.predict(z_t, t, target, source)
    eps_tgt = eps_tgt.detach()
    eps_src_d = eps_src.detach()
    eps_base = None
    if mode == "vsd":
        if baseline is None or not hasattr(denoiser, "predict_baseline"):
            raise ValueError('mode "vsd" needs baseline inputs and a denoiser with predict_baseline')
        with torch.no_grad():
            eps_base = denoiser.predict_baseline(z_t, t, baseline).detach()

    target_term = eps_tgt - noise
    variance_term = eps_tgt - eps_src_d
    if mode in ("cfg", "vsd"):
        eps_hat = combine_cfg(eps_tgt, eps_src_d, cfg.guidance_scale, cfg.cfg_convention)
        w = (1 - a4) if cfg.weighting == "sds" else torch.ones_like(a4)
        grad = w * (eps_hat - (noise if eps_base is None else eps_base))
        grad = torch.nan_to_num(grad)
        if cfg.grad_clip is not None:
            clip = schedule_value(cfg.grad_clip, step)
            grad = grad.clamp(-clip, clip)
    elif mode == "difference":
        grad = torch.nan_to_num(difference_weight * variance_term)
    else:
        raise ValueError(f"unknown score-distillation mode {mode!r}")

    logs = {
        "t": t.float().mean().item(),
        "norm_target_term": target_term.flatten(1).norm(dim=1).mean().item(),
        "norm_variance_term": variance_term.flatten(1).norm(dim=1).mean().item(),
        "norm_grad": grad.flatten(1).norm(dim=1).mean().item(),
        "cfg_scale_diffusers": effective_diffusers_scale(cfg.guidance_scale, cfg.cfg_convention)
        if mode in ("cfg", "vsd") else 0.0,
    }
    if eps_base is not None:
        # how well the baseline (VSD's LoRA) denoises the current renders: falls as it learns them
        logs["norm_baseline_error"] = (eps_base - noise).flatten(1).norm(dim=1).mean().item()
    return DistillationOutput(grad, t, noise, z_t, eps_tgt, eps_src, a, logs, eps_base)


def distillation_loss(latents: Tensor, grad: Tensor) -> Tensor:
    """0.5 ||z - (z - grad).detach()||^2 / B: a scalar whose gradient w.r.t. `latents` [B,c,h,w] is grad / B."""
    return 0.5 * ((latents - (latents - grad).detach()) ** 2).sum() / latents.shape[0]
