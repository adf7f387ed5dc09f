"""AnchorDS finetune: train one small adapter layer on the pseudo-source reconstruction error.

IP-Adapter: the `to_k_ip` / `to_v_ip` projections of the cross-attention processors inside one UNet
block (released: `up_blocks.3`, 6 matrices, 1,474,560 parameters on SD 1.5).
ControlNet: the parameters of one ControlNet module (released: `controlnet_down_blocks.11`; a
negative index such as `controlnet_down_blocks.-1` counts from the end).
Everything else stays frozen.

`AdapterFinetune` is also what trains VSD's LoRA (generators/guidance/vsd.py): any part of the
guidance that trains during a run is a `TrainablePart`, and the run loop treats them all alike.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from generators.config import FinetuneConfig


class TrainablePart(Protocol):
    """A part of the guidance that trains inside the run loop (AnchorDS's adapter layer, VSD's LoRA).

    The loop adds its loss (`GuidanceStep.loss_finetune`) to the Gaussians' loss, backpropagates once,
    then calls `step` (with the run's `torch.amp.GradScaler` when the loss was scaled: fp16);
    checkpoints hold `state_dict()` so a resumed run continues as if uninterrupted (bit for bit
    with one CPU thread: generators/train.py).
    """

    def zero_grad(self) -> None: ...

    def step(self, scaler: "torch.amp.GradScaler | None" = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def _resolve_module(root: nn.Module, name: str) -> nn.Module:
    module = root
    for part in name.split("."):
        if part.lstrip("-").isdigit() and isinstance(module, (nn.ModuleList, nn.Sequential)):
            module = module[int(part)]
        else:
            module = getattr(module, part)
    return module


def ip_adapter_parameters(unet: nn.Module, block: str) -> dict[str, nn.Parameter]:
    """IP key/value projection weights of every attention processor under `block`."""
    params: dict[str, nn.Parameter] = {}
    for name, proc in unet.attn_processors.items():
        if name.startswith(block + ".") and hasattr(proc, "to_k_ip"):
            for i, (k, v) in enumerate(zip(proc.to_k_ip, proc.to_v_ip)):
                for pname, p in [*((f"to_k_ip.{i}.{n}", q) for n, q in k.named_parameters()),
                                 *((f"to_v_ip.{i}.{n}", q) for n, q in v.named_parameters())]:
                    params[f"{name}.{pname}"] = p
    if not params:
        raise ValueError(f"finetune layer {block!r} has no IP-Adapter projections in this UNet")
    return params


def controlnet_parameters(controlnet: nn.Module, layer: str) -> dict[str, nn.Parameter]:
    try:
        module = _resolve_module(controlnet, layer)
    except (AttributeError, IndexError) as e:
        raise ValueError(f"finetune layer {layer!r} is not a module of this ControlNet") from e
    return {f"{layer}.{n}": p for n, p in module.named_parameters()}


class AdapterFinetune:
    """Owns trainable adapter parameters and their optimiser (a `TrainablePart`).

    The optimiser always works on fp32 master copies (the released code trains these matrices in
    fp32): with a half-precision UNet, Adam with eps 1e-15 on fp16/bf16 weights would be
    meaningless. Backward leaves each step's gradient on the network's own (half) parameters;
    `step` moves it into the masters (and off the network, so the next backward starts from
    zero), steps Adam, and copies the master values back into the network.
    Adam with decoupled weight decay (= AdamW; with weight_decay 0 exactly Adam).
    """

    def __init__(self, params: dict[str, nn.Parameter], lr: float, adam_eps: float,
                 betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0):
        self.params = params
        for p in params.values():
            p.requires_grad_(True)
        self.masters = {k: p if p.dtype == torch.float32 else p.detach().float().requires_grad_(True)
                        for k, p in params.items()}
        self.optimizer = torch.optim.Adam(list(self.masters.values()), lr=lr, eps=adam_eps, betas=tuple(betas),
                                          weight_decay=weight_decay, decoupled_weight_decay=True)

    @classmethod
    def for_source(cls, models, source_kind: str, cfg: FinetuneConfig) -> "AdapterFinetune":
        if source_kind == "ip-adapter":
            return cls(ip_adapter_parameters(models.unet, cfg.layer), cfg.lr, cfg.adam_eps)
        if source_kind == "controlnet":
            return cls(controlnet_parameters(models.controlnet, cfg.layer), cfg.lr, cfg.adam_eps)
        raise ValueError(f"finetune needs an ip-adapter or controlnet source, not {source_kind!r}")

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        for p in self.params.values():  # the network's half copies accumulate too
            p.grad = None

    @torch.no_grad()
    def step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """One Adam step on this step's gradient; `scaler` unscales it (and skips an inf step)."""
        for k, p in self.params.items():
            master = self.masters[k]
            if master is not p:
                master.grad = None if p.grad is None else p.grad.float()
                p.grad = None  # moved: a gradient left here would be summed into the next step's
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)
        for k, p in self.params.items():
            if self.masters[k] is not p:
                p.copy_(self.masters[k])

    def state_dict(self) -> dict:
        return {"params": {k: v.detach().cpu().clone() for k, v in self.masters.items()},
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for k, v in state["params"].items():
                self.masters[k].copy_(v)
                self.params[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
