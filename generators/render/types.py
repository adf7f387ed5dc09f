"""What every renderer returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class RenderOutput:
    rgb: Tensor  # [C, H, W, 3] composited over the background
    alpha: Tensor  # [C, H, W, 1] accumulated opacity
    depth: Tensor  # [C, H, W, 1] expected camera-space depth: sum(w z) / sum(w), 0 where alpha is 0
    means2d: Tensor  # [C, N, 2] projected centres in pixels; .grad read by densification
    radii: Tensor  # [C, N] int screen radius in pixels, 0 where the Gaussian is not visible
