"""GaussianDreamer's densify and prune (Inria's adaptive density control), on our Gaussians.

Per training step while `should_collect_stats(step)`:
    accumulate_stats(state, gaussians, means2d_grad, radii, width, height)
and when `should_densify(step)`:
    densify_and_prune(gaussians, optimizer, state, step, cfg, generator)

Densify and prune (gaussiandreamer-recipe.md section 3, Inria `densify_and_prune`):
  grad = accumulated view-space gradient norm / number of steps the Gaussian was visible;
  clone  grad >= threshold and max scale <= percent_dense * extent  (an exact copy is appended);
  split  grad >= threshold and max scale >  percent_dense * extent  (split_n samples drawn from
         the Gaussian, scales / split_scale_div; the original is removed);
  prune  opacity < prune_opacity, and when step > big_prune_after_step also a world max scale
         > max_world_size_frac * extent (and, with screen_size_prune "collected-radii", a max
         screen radius > max_screen_radius_px).

Inria and GaussianDreamer zero `max_radii2D` inside `densification_postfix`, i.e. *before* the
prune test, so their screen-size rule never fires: `screen_size_prune: released` (the default)
reproduces that. `collected-radii` tests the radii collected since the last densification (new
Gaussians count as 0 px), which is what the rule is meant to do.

The Adam state follows the rows: kept Gaussians keep their moments, new ones start at zero,
removed ones drop theirs. Param groups whose name is not a Gaussian attribute are not touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from generators.config import DensifyConfig
from generators.gaussians.model import Gaussians, quat_to_rotmat


# ----------------------------------------------------------------------------------------------
# Statistics


@dataclass
class DensifyState:
    """Per-Gaussian statistics since the last densification.

    grad_accum   [N]  sum over steps of |sum over views of the NDC-space means2d gradient|
    denom        [N]  number of steps in which the Gaussian was visible
    max_radii2d  [N]  largest screen radius (pixels) seen
    """

    grad_accum: Tensor
    denom: Tensor
    max_radii2d: Tensor

    @classmethod
    def zeros(cls, n: int, device: torch.device | str | None = None) -> "DensifyState":
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device),
                   torch.zeros(n, device=device))

    def __len__(self) -> int:
        return self.grad_accum.shape[0]

    def reset(self, n: int) -> None:
        """Zero every statistic for `n` Gaussians (after densification the rows have changed)."""
        device = self.grad_accum.device
        self.grad_accum = torch.zeros(n, device=device)
        self.denom = torch.zeros(n, device=device)
        self.max_radii2d = torch.zeros(n, device=device)

    def mean_grad(self) -> Tensor:
        """[N] average gradient norm over visible steps (0 where never visible)."""
        return torch.where(self.denom > 0, self.grad_accum / self.denom.clamp_min(1.0),
                           torch.zeros_like(self.grad_accum))

    def state_dict(self) -> dict:
        return {"grad_accum": self.grad_accum.detach().cpu().clone(),
                "denom": self.denom.detach().cpu().clone(),
                "max_radii2d": self.max_radii2d.detach().cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        n = state["grad_accum"].shape[0] if "grad_accum" in state else -1
        for key in ("grad_accum", "denom", "max_radii2d"):
            if key not in state or tuple(state[key].shape) != (n,):
                raise ValueError(f"densify state: '{key}' missing or not of shape [{n}]")
        device = self.grad_accum.device
        self.grad_accum = state["grad_accum"].to(device).float().clone()
        self.denom = state["denom"].to(device).float().clone()
        self.max_radii2d = state["max_radii2d"].to(device).float().clone()


def should_collect_stats(step: int, cfg: DensifyConfig) -> bool:
    """Statistics are gathered while step < stats_until_step (GaussianDreamer: 900)."""
    return cfg.enabled and step < cfg.stats_until_step


def should_densify(step: int, cfg: DensifyConfig) -> bool:
    """step > start_after_step, step % every == 0, step < stop_after_step (400, 500, ..., 800)."""
    return (cfg.enabled and step > cfg.start_after_step and step % cfg.every == 0
            and step < cfg.stop_after_step)


@torch.no_grad()
def accumulate_stats(state: DensifyState, gaussians: Gaussians, means2d_grad: Tensor, radii: Tensor,
                     width: int, height: int) -> None:
    """Add one training step's view-space statistics to `state` (in place).

    means2d_grad  [C, N, 2]  d loss / d (projected centre), in PIXELS (gsplat's means2d.grad)
    radii         [C, N] or [C, N, 2]  screen radii in pixels (gsplat 1.5 gives x and y radii;
                  their max stands in for Inria's single radius); 0 = not visible in that view
    width, height of the rendered images

    GaussianDreamer's gradients are in Inria NDC units: Inria's rasteriser maps
    pixel = ((ndc + 1) * W - 1) / 2, so d pixel / d ndc = W / 2 and, by the chain rule,
    dL/d ndc = dL/d pixel * W / 2 (H / 2 for y). We convert, then, like GaussianDreamer, sum the
    C views' gradients and take the norm of that sum.
    """
    n = len(gaussians)
    if means2d_grad.ndim != 3 or means2d_grad.shape[1:] != (n, 2):
        raise ValueError(f"means2d_grad must be [C, {n}, 2], got {tuple(means2d_grad.shape)}")
    if radii.ndim == 3:
        radii = radii.max(dim=-1).values  # [C, N]
    if radii.shape != means2d_grad.shape[:2]:
        raise ValueError(f"radii must be [C, N] or [C, N, 2] matching means2d_grad, got "
                         f"{tuple(radii.shape)}")
    if len(state) != n:
        raise ValueError(f"densify state has {len(state)} rows but there are {n} Gaussians")

    to_ndc = torch.tensor([width / 2.0, height / 2.0], device=means2d_grad.device,
                          dtype=means2d_grad.dtype)
    grad_ndc = (means2d_grad * to_ndc).sum(dim=0)  # [N, 2], summed over views
    r_max = radii.max(dim=0).values.to(state.max_radii2d.dtype)  # [N]
    visible = r_max > 0
    state.grad_accum[visible] += grad_ndc[visible].norm(dim=-1).to(state.grad_accum.dtype)
    state.denom[visible] += 1
    state.max_radii2d[visible] = torch.maximum(state.max_radii2d[visible], r_max[visible])


# ----------------------------------------------------------------------------------------------
# Densify and prune


def _cap_growth(clone: Tensor, split: Tensor, grads: Tensor, n: int,
                cfg: DensifyConfig) -> tuple[Tensor, Tensor]:
    """Drop the lowest-gradient candidates until the new count stays <= cfg.max_gaussians.

    The cap is checked before pruning, so the count never exceeds it even transiently.
    """
    growth = clone.long() + split.long() * (cfg.split_n - 1)  # [N] rows added per candidate
    budget = max(cfg.max_gaussians - n, 0)
    if int(growth.sum()) <= budget:
        return clone, split
    candidates = torch.nonzero(clone | split).squeeze(1)
    order = candidates[torch.argsort(grads[candidates], descending=True, stable=True)]
    allowed = order[torch.cumsum(growth[order], dim=0) <= budget]
    keep = torch.zeros_like(clone)
    keep[allowed] = True
    return clone & keep, split & keep


def _split_rows(gaussians: Gaussians, split: Tensor, cfg: DensifyConfig,
                generator: torch.Generator) -> dict[str, Tensor]:
    """split_n children per selected Gaussian, ordered child-major as Inria's `.repeat(N, 1)`."""
    p = gaussians.params
    k = cfg.split_n
    stds = gaussians.scales_act[split].repeat(k, 1)  # [S*k, 3]
    noise = torch.randn(stds.shape, generator=generator, device=generator.device)
    offsets = noise.to(stds.device) * stds  # [S*k, 3] in the Gaussian's own frame
    rots = quat_to_rotmat(p["quats"][split]).repeat(k, 1, 1)  # [S*k, 3, 3]
    means = torch.bmm(rots, offsets[:, :, None])[:, :, 0] + p["means"][split].repeat(k, 1)
    return {
        "means": means,
        "scales": torch.log(stds / cfg.split_scale_div),
        "quats": p["quats"][split].repeat(k, 1),
        "opacities": p["opacities"][split].repeat(k),
        "sh0": p["sh0"][split].repeat(k, 1, 1),
        "shN": p["shN"][split].repeat(k, 1, 1),
    }


def _rebuild_rows(gaussians: Gaussians, optimizer: torch.optim.Optimizer,
                  new_rows: dict[str, Tensor], survivors: Tensor) -> None:
    """Append `new_rows` to every attribute, keep rows where `survivors` [N + M], and make the
    optimizer follow (new rows get zero moments, dropped rows lose theirs)."""
    n_old = len(gaussians)
    groups = {g.get("name"): g for g in optimizer.param_groups}
    for name in Gaussians.param_names:
        old = gaussians.params[name]
        new_param = nn.Parameter(torch.cat([old.detach(), new_rows[name].detach()])[survivors]
                                 .contiguous(), requires_grad=old.requires_grad)
        group = groups.get(name)
        if group is not None:
            if len(group["params"]) != 1 or group["params"][0] is not old:
                raise ValueError(f"optimizer group '{name}' does not hold the Gaussians' '{name}' "
                                 f"parameter (build it with build_optimizer)")
            state = optimizer.state.pop(old, None)
            if state:
                for key, value in state.items():
                    # per-row tensors (exp_avg, exp_avg_sq, max_exp_avg_sq); "step" is a scalar
                    if torch.is_tensor(value) and value.shape == old.shape:
                        pad = torch.zeros_like(new_rows[name], dtype=value.dtype, device=value.device)
                        state[key] = torch.cat([value, pad])[survivors].contiguous()
                optimizer.state[new_param] = state
            group["params"][0] = new_param
        gaussians.params[name] = new_param
    assert len(gaussians) == int(survivors.sum()) and survivors.shape[0] >= n_old


@torch.no_grad()
def densify_and_prune(gaussians: Gaussians, optimizer: torch.optim.Optimizer, state: DensifyState,
                      step: int, cfg: DensifyConfig, generator: torch.Generator) -> dict:
    """Clone, split and prune in place; reset `state` to the new size.

    Returns counts: before, cloned (Gaussians copied), split (originals replaced by split_n
    children), pruned (Gaussians removed by the prune rules after densification, new ones
    included; the split originals are not counted here), capped (candidates skipped because of
    cfg.max_gaussians), after.
    """
    n = len(gaussians)
    if len(state) != n:
        raise ValueError(f"densify state has {len(state)} rows but there are {n} Gaussians")
    device = gaussians.device
    grads = state.mean_grad().to(device)  # [N]
    max_scale = gaussians.scales_act.max(dim=1).values  # [N]
    high = grads >= cfg.grad_threshold
    small = max_scale <= cfg.percent_dense * cfg.extent
    clone0, split0 = high & small, high & ~small
    clone, split = _cap_growth(clone0, split0, grads, n, cfg)

    p = gaussians.params
    clone_rows = {name: p[name][clone] for name in Gaussians.param_names}
    split_rows = _split_rows(gaussians, split, cfg, generator)
    new_rows = {name: torch.cat([clone_rows[name], split_rows[name]]) for name in Gaussians.param_names}
    n_new = new_rows["means"].shape[0]

    # the prune rules look at the set after densification: old rows then new rows
    present = torch.cat([~split, torch.ones(n_new, dtype=torch.bool, device=device)])  # [N + M]
    opacity = torch.sigmoid(torch.cat([p["opacities"], new_rows["opacities"]]))
    prune = opacity < cfg.prune_opacity
    if step > cfg.big_prune_after_step:
        world = torch.exp(torch.cat([p["scales"], new_rows["scales"]])).max(dim=1).values
        prune |= world > cfg.max_world_size_frac * cfg.extent
        if cfg.screen_size_prune == "collected-radii":
            # new Gaussians have no screen statistics yet: 0 px
            radii = torch.cat([state.max_radii2d.to(device), torch.zeros(n_new, device=device)])
            prune |= radii > cfg.max_screen_radius_px
    survivors = present & ~prune

    _rebuild_rows(gaussians, optimizer, new_rows, survivors)
    state.reset(len(gaussians))
    return {
        "before": n,
        "cloned": int(clone.sum()),
        "split": int(split.sum()),
        "pruned": int((present & prune).sum()),
        "capped": int((clone0 | split0).sum() - (clone | split).sum()),
        "after": len(gaussians),
    }
