"""Control images for the ControlNet anchor, made from the 3D model itself (no detector network).

The released code runs NormalBAE on the RGB render. Rendering the Gaussians' depth gives the
geometry exactly, so by default we derive the normal map from the rendered depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.cameras import Cameras


def camera_space_points(depth: Tensor, cameras: Cameras) -> Tensor:
    """Back-project depth [C, H, W, 1] (camera z) to camera-space points [C, H, W, 3] (OpenCV axes)."""
    c, h, w, _ = depth.shape
    K = cameras.Ks.to(depth.device)
    ys, xs = torch.meshgrid(
        torch.arange(h, device=depth.device, dtype=depth.dtype) + 0.5,
        torch.arange(w, device=depth.device, dtype=depth.dtype) + 0.5,
        indexing="ij",
    )
    z = depth[..., 0]
    x = (xs - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None] * z
    y = (ys - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None] * z
    return torch.stack([x, y, z], dim=-1)


def normal_map_from_depth(depth: Tensor, alpha: Tensor, cameras: Cameras, threshold: float = 0.5) -> Tensor:
    """Normal map [C, 3, H, W] in [0, 1] from rendered depth.

    Normals are in camera axes with x right, y up, z toward the viewer (the common convention of
    normal-map ControlNets), encoded as (n + 1) / 2; pixels with alpha below `threshold` are black.
    """
    p = camera_space_points(depth, cameras)  # [C, H, W, 3] OpenCV: x right, y down, z forward
    # central differences, replicated at the border
    pp = F.pad(p.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="replicate")  # [C, 3, H+2, W+2]
    dx = (pp[:, :, 1:-1, 2:] - pp[:, :, 1:-1, :-2]).permute(0, 2, 3, 1)
    dy = (pp[:, :, 2:, 1:-1] - pp[:, :, :-2, 1:-1]).permute(0, 2, 3, 1)
    n = torch.linalg.cross(dy, dx, dim=-1)  # points toward the camera (negative z in OpenCV)
    n = F.normalize(n, dim=-1, eps=1e-12)
    n = n * torch.tensor([1.0, -1.0, -1.0], device=n.device, dtype=n.dtype)  # OpenCV -> x right, y up, z to viewer
    img = (n + 1) * 0.5
    img = img * (alpha >= threshold).to(img.dtype)
    return img.permute(0, 3, 1, 2).contiguous()


def depth_map(depth: Tensor, alpha: Tensor, threshold: float = 0.5) -> Tensor:
    """Inverse-depth image [C, 3, H, W] in [0, 1] (near is bright, as MiDaS-style depth ControlNets expect)."""
    mask = alpha[..., 0] >= threshold
    inv = torch.where(mask, 1.0 / depth[..., 0].clamp_min(1e-6), torch.zeros_like(depth[..., 0]))
    lo = torch.stack([inv[i][mask[i]].min() if mask[i].any() else inv.new_zeros(()) for i in range(inv.shape[0])])
    hi = inv.flatten(1).max(dim=1).values
    img = ((inv - lo[:, None, None]) / (hi - lo).clamp_min(1e-6)[:, None, None]).clamp(0, 1) * mask
    return img[:, None].expand(-1, 3, -1, -1).contiguous()
