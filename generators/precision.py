"""Numeric precision of one run (the run setting `precision`).

| precision | frozen network weights | guidance forward and backward      | loss scaling                     |
| --------- | ---------------------- | ---------------------------------- | -------------------------------- |
| bf16      | bfloat16               | `torch.autocast(dtype=bfloat16)`   | none: bf16 has fp32's exponent   |
| fp16      | float16                | `torch.autocast(dtype=float16)`    | dynamic (`torch.amp.GradScaler`) |
| fp32      | float32                | plain fp32                         | none                             |

"auto" (the default): bf16 on a CUDA GPU with native bf16 (Ampere and newer), fp16 on older CUDA
GPUs, fp32 on CPU. This is what Lightning's "16-mixed" gives GaussianDreamer and threestudio: half
weights for the frozen diffusion networks, autocast, and (fp16) a loss scaler, so that the small
per-element gradients of the VAE-encoder backward and of L_rec (~1e-6 at 512 px) do not fall into
fp16's subnormal range.

Everything that trains keeps fp32 weights: the Gaussians (never cast), the finetuned adapter layer
and VSD's LoRA and camera embedding (fp32 masters in `AdapterFinetune`). Only the guidance (the
networks) runs under autocast; the renderer, the sparsity loss and the score-distillation
arithmetic (CFG, weighting, clamp; on predictions cast to fp32) stay in fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from generators.errors import UserError

PRECISIONS = ("bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device type ("cpu", "cuda")."""

    name: str  # "bf16" | "fp16" | "fp32"
    device_type: str

    @property
    def weights_dtype(self) -> torch.dtype:
        """The dtype the frozen networks are loaded in."""
        return _DTYPES[self.name]

    @property
    def mixed(self) -> bool:
        return self.name != "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the guidance runs in (a no-op in fp32)."""
        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.weights_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Dynamic loss scaling, enabled for fp16 only (a disabled scaler passes everything through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Ampere (compute capability 8.0) and newer compute in bf16 natively."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def resolve_precision(setting: str, device: torch.device | str) -> Precision:
    """The run setting ("auto" or one of PRECISIONS) on `device` -> a Precision."""
    device = torch.device(device)
    if setting == "auto":
        if device.type == "cuda":
            name = "bf16" if cuda_has_native_bf16(device) else "fp16"
        else:
            name = "fp32"
    elif setting in PRECISIONS:
        name = setting
    else:
        raise UserError(f"precision {setting!r} is not one of auto, {', '.join(PRECISIONS)}")
    if name == "bf16" and device.type == "cuda" and not cuda_has_native_bf16(device):
        raise UserError(f"precision=bf16 needs a GPU with native bf16 (Ampere or newer); "
                        f"{torch.cuda.get_device_name(device)} has none: use precision=fp16")
    return Precision(name, device.type)
