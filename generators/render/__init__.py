"""One rendering interface, two implementations: gsplat on CUDA, a dense PyTorch rasterizer on CPU.

    out = render(gaussians, cameras, cfg, background)   # -> RenderOutput (see types.py)

The dense CPU rasterizer is also the reference that gsplat is tested against on a GPU.
"""

from __future__ import annotations

import torch
from torch import Tensor

from generators.cameras import Cameras
from generators.config import RenderConfig
from generators.gaussians import Gaussians
from generators.render.types import RenderOutput

__all__ = ["render", "RenderOutput", "resolve_backend"]


def resolve_backend(cfg: RenderConfig, device: torch.device) -> str:
    if cfg.backend != "auto":
        return cfg.backend
    return "gsplat" if device.type == "cuda" else "dense"


def render(gaussians: Gaussians, cameras: Cameras, cfg: RenderConfig, background: Tensor | None = None) -> RenderOutput:
    """Render `gaussians` from every camera. `background` [3] defaults to cfg.background."""
    device = gaussians.device
    if background is None:
        background = torch.tensor(cfg.background, dtype=torch.float32, device=device)
    backend = resolve_backend(cfg, device)
    if backend == "gsplat":
        from generators.render.gsplat_backend import render_gsplat

        return render_gsplat(gaussians, cameras.to(device), cfg, background)
    from generators.render.dense import render_dense

    return render_dense(gaussians, cameras.to(device), cfg, background)
