"""Gradient agreement between two precisions of one run: the first optimisation steps of a config,
run as the loop runs them (generators/train.py), with every gradient kept for comparison.

    a = step_gradients(cfg_fp32, models_fp32, device)
    b = step_gradients(cfg_bf16, models_bf16, device)
    gradient_agreement(a[0], b[0])   # {"latent_cosine": ..., "gaussians_cosine": ..., ...}

Used by tests/test_precision.py (CPU, the tiny set) and tests/perf/precision_agreement.py, which
records the measured agreement per method.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generators.config import RunConfig
from generators.precision import resolve_precision
from generators.train import (
    RunState,
    backward_step,
    build_guidance,
    forward_step,
    initial_gaussians,
    optimizer_step,
    step_generator,
)


@torch.no_grad()
def _grads(params: dict, scale: float) -> dict[str, Tensor]:
    return {n: p.grad.float() / scale for n, p in params.items() if p.grad is not None}


def step_gradients(cfg: RunConfig, models, device: torch.device | str, steps: int = 2,
                   loss_scaling: bool = True) -> list[dict]:
    """The first `steps` steps of `cfg` (without densification); per step the gradients backward
    left, unscaled: "latent" [B, c, h, w] (the latent gradient after the view mask), "gaussians"
    {attribute: grad}, "trainer" {name: grad} of the trainable part (empty when nothing trains),
    and "skipped": whether fp16's loss scaler found an overflow and skipped the step.
    `loss_scaling=False` switches fp16's scaler off (to show what it prevents)."""
    from generators.gaussians.densify import DensifyState
    from generators.gaussians.optimizer import build_optimizer, update_learning_rates

    device = torch.device(device)
    precision = resolve_precision(cfg.precision, device)
    guidance = build_guidance(cfg, models)
    g = initial_gaussians(cfg, models, device)
    scaler = precision.grad_scaler() if loss_scaling else torch.amp.GradScaler(device.type, enabled=False)
    state = RunState(0, g, build_optimizer(g, cfg.optim), DensifyState.zeros(len(g), device), scaler=scaler)
    background = torch.tensor(cfg.render.background, dtype=torch.float32, device=device)
    records = []
    for step in range(steps):
        update_learning_rates(state.optimizer, step, cfg.optim)
        fwd = forward_step(cfg, guidance, g, step, step_generator(cfg.seed, step), device, precision, background)
        backward_step(state, guidance, fwd.loss)
        trainer_scale = state.scaler.get_scale() if state.scaler.is_enabled() else 1.0  # still scaled
        records.append({
            "latent": fwd.gstep.latent_grad.float().clone(),
            "gaussians": _grads(g.params, 1.0),  # unscaled by backward_step
            "trainer": _grads(guidance.trainer.params, trainer_scale) if guidance.trainer is not None else {},
        })
        scale = state.scaler.get_scale() if state.scaler.is_enabled() else 1.0
        with torch.no_grad():
            optimizer_step(state, guidance)
        # fp16: an overflow makes the scaler skip the step and lower its scale
        records[-1]["skipped"] = state.scaler.is_enabled() and state.scaler.get_scale() < scale
    return records


def cosine(a: Tensor, b: Tensor) -> float | None:
    """cos(a, b); None when either is all zero or not finite (an fp16 overflow the scaler skips)."""
    a, b = a.double().flatten(), b.double().flatten()
    value = float((a @ b) / (a.norm() * b.norm()))
    return value if torch.isfinite(torch.tensor(value)) else None


def _concat(grads: dict[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([grads[n].flatten() for n in names]) if names else torch.zeros(0)


def gradient_agreement(reference: dict, other: dict) -> dict:
    """Cosines of one step's gradients (`step_gradients` records) against a reference precision's,
    and the tensors whose gradient is all zero in `other` though not in the reference."""
    out = {"latent_cosine": cosine(reference["latent"], other["latent"]), "skipped": other["skipped"]}
    zeroed = []
    for part in ("gaussians", "trainer"):
        ref, oth = reference[part], other[part]
        live = [n for n, v in ref.items() if bool(v.ne(0).any())]  # a gradient the reference has
        zeroed += [f"{part}.{n}" for n in live if n not in oth or not bool(oth[n].ne(0).any())]
        both = [n for n in live if n in oth]
        out[f"{part}_cosine"] = cosine(_concat(ref, both), _concat(oth, both)) if both else None
        out[f"{part}_tensors"] = len(live)
    out["zeroed"] = zeroed
    return out


# A small comparison on the embedded tiny set (what tests/test_precision.py and
# tests/perf/precision_agreement.py run): a ball of Gaussians, 2 views of 32 px, no densification;
# the filter's gamma so high that every view is kept, so the latent gradients are comparable
TINY_OVERRIDES = {
    "camera": {"batch_size": 2, "width": 32, "height": 32},
    "init": {"kind": "ball", "ball_points": 300, "ball_radius": 0.6},
    "densify": {"enabled": False},
    "guidance": {"filter": {"gamma": 1.0e9}},
}


# loss weights that put the per-element gradients of the VAE-encoder backward and of L_rec at
# ~1e-6 and below, the size estimated for full-size 512 px renders: inside fp16's subnormal range
SMALL_GRADIENTS = {"loss": {"lambda_sds": 1e-6, "lambda_sparsity": 0.0, "lambda_finetune": 1e-6}}


def tiny_config(method: str, precision: str, **extra) -> RunConfig:
    from generators.config import deep_merge
    from generators.methods import resolve_run_config

    overrides = deep_merge(deep_merge(TINY_OVERRIDES, {"precision": precision, "steps": 2}), extra)
    return resolve_run_config(method, prompt="a red apple", seed=0, models="tiny", overrides=overrides)


def tiny_agreement(method: str, precision: str, steps: int = 2, loss_scaling: bool = True,
                   device: str = "cpu", **extra) -> list[dict]:
    """`gradient_agreement` of `precision` against fp32 at each of the first `steps` steps of
    `method` on the tiny set (on `device`), each precision with its own copy of the networks in
    its dtype."""
    from generators.models.loader import load_models
    from generators.train import required_components

    records = {}
    for name in ("fp32", precision):
        cfg = tiny_config(method, name, **extra)
        models = load_models("tiny", required_components(cfg), device,
                             dtype=resolve_precision(name, device).weights_dtype)
        records[name] = step_gradients(cfg, models, device, steps, loss_scaling)
    return [gradient_agreement(a, b) for a, b in zip(records["fp32"], records[precision])]
