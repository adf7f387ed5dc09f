"""Inria's optimiser for 3D Gaussians: one Adam, one named param group per attribute.

GaussianDreamer hard-codes these learning rates (gaussiandreamer-recipe.md section 2); here they
come from `OptimConfig`. Only the means' learning rate is scheduled: log-linear from
lr_means_init to lr_means_final over lr_means_max_steps, both scaled by spatial_lr_scale
(Inria's `get_expon_lr_func` with no delay).

Every group carries a "name". Densification rewrites only the groups named after a Gaussian
attribute (`Gaussians.param_names`); others (e.g. an adapter being finetuned) may share the
optimizer and are left alone.
"""

from __future__ import annotations

import math

import torch

from generators.config import OptimConfig
from generators.gaussians.model import Gaussians


def group_learning_rates(cfg: OptimConfig) -> dict[str, float]:
    """Initial learning rate of each Gaussian attribute's group."""
    return {
        "means": cfg.lr_means_init * cfg.spatial_lr_scale,
        "scales": cfg.lr_scales,
        "quats": cfg.lr_quats,
        "opacities": cfg.lr_opacity,
        "sh0": cfg.lr_sh_dc,
        "shN": cfg.lr_sh_rest,
    }


def build_optimizer(gaussians: Gaussians, cfg: OptimConfig) -> torch.optim.Adam:
    """Adam over the Gaussians with groups named means, scales, quats, opacities, sh0, shN."""
    lrs = group_learning_rates(cfg)
    groups = [{"params": [gaussians.params[name]], "lr": lrs[name], "name": name}
              for name in Gaussians.param_names]
    # lr=0.0 is only the default for groups without their own lr; every group here sets one.
    return torch.optim.Adam(groups, lr=0.0, eps=cfg.adam_eps)


def means_lr(step: int, cfg: OptimConfig) -> float:
    """Learning rate of the means at `step`: exp(lerp(log init, log final, step / max_steps)).

    The fraction is clipped to [0, 1], so the rate stays at the final value past max_steps.
    """
    lr_init = cfg.lr_means_init * cfg.spatial_lr_scale
    lr_final = cfg.lr_means_final * cfg.spatial_lr_scale
    if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
        return 0.0
    t = min(max(step / cfg.lr_means_max_steps, 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1.0 - t) + math.log(lr_final) * t)


def update_learning_rates(optimizer: torch.optim.Optimizer, step: int, cfg: OptimConfig) -> float:
    """Set the "means" group's learning rate for `step`; returns it."""
    lr = means_lr(step, cfg)
    found = False
    for group in optimizer.param_groups:
        if group.get("name") == "means":
            group["lr"] = lr
            found = True
    if not found:
        raise ValueError("optimizer has no param group named 'means' (build it with build_optimizer)")
    return lr
