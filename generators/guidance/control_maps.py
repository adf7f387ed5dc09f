"""Control images for the ControlNet anchor.

The released code runs NormalBAE (`lllyasviel/Annotators`) on the RGB render. Rendering the
Gaussians' depth gives the geometry exactly, so by default we derive the normal map from the
rendered depth (`normal_map_from_depth`, `depth_map`: no detector network).

`detector_normal_map` is the option closest to the released path: normals *estimated from the
RGB render alone*. It is NOT NormalBAE (that network is not in transformers/diffusers): it runs
a monocular relative-depth network (DPT, `Intel/dpt-hybrid-midas`, the MiDaS model behind
controlnet_aux's MiDaS normal detector) and turns its relative inverse depth into normals with
that detector's recipe (Sobel gradients of the depth, a constant z, background below a
threshold of the normalised depth made flat). Every normal map here uses one encoding
(`encode_normals`), so the ControlNet sees the same convention whichever map is chosen.

That encoding is the one the NormalBAE ControlNets (lllyasviel control_v11p_sd15_normalbae and
its SD 2.1 ports) were trained on: NormalBAE's ScanNet-protocol map as controlnet_aux's
NormalBaeDetector writes it, ((n + 1) / 2) in RGB order, where in the ControlNet 1.1 README's words
"blue is front, red is left, green is top". So on a sphere the leftmost pixels are red (R = 1),
the topmost green (G = 1), the centre blue (0.5, 0.5, 1). Background pixels get the flat
normal facing the viewer, (0.5, 0.5, 1), as NormalBAE estimates a featureless backdrop and as
controlnet_aux's MiDaS normal detector writes its background (never (0, 0, 0), which is no normal).
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


# the ControlNet convention's axes in camera axes (x right, y up, z toward the viewer): red is left
_CONTROLNET_AXES = (-1.0, 1.0, 1.0)
# what background pixels show: the flat normal facing the viewer (x right, y up, z toward the viewer)
BACKGROUND_NORMAL = (0.0, 0.0, 1.0)


def encode_normals(n: Tensor) -> Tensor:
    """Unit normals [C, H, W, 3] in camera axes (x right, y up, z toward the viewer) -> the
    NormalBAE ControlNets' image [C, H, W, 3] in [0, 1]: R = (1 - x) / 2 (red is left),
    G = (1 + y) / 2 (green is top), B = (1 + z) / 2 (blue is front)."""
    axes = torch.tensor(_CONTROLNET_AXES, device=n.device, dtype=n.dtype)
    return (n * axes + 1) * 0.5


def normal_map_from_depth(depth: Tensor, alpha: Tensor, cameras: Cameras, threshold: float = 0.5) -> Tensor:
    """Normal map [C, 3, H, W] in [0, 1] from rendered depth.

    Normals in camera axes (x right, y up, z toward the viewer) through `encode_normals` (the
    NormalBAE ControlNets' colours); pixels with alpha below `threshold` are background: the flat
    normal facing the viewer.
    """
    p = camera_space_points(depth, cameras)  # [C, H, W, 3] OpenCV: x right, y down, z forward
    # central differences, replicated at the border
    pp = F.pad(p.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="replicate")  # [C, 3, H+2, W+2]
    dx = (pp[:, :, 1:-1, 2:] - pp[:, :, 1:-1, :-2]).permute(0, 2, 3, 1)
    dy = (pp[:, :, 2:, 1:-1] - pp[:, :, :-2, 1:-1]).permute(0, 2, 3, 1)
    n = torch.linalg.cross(dy, dx, dim=-1)  # points toward the camera (negative z in OpenCV)
    n = F.normalize(n, dim=-1, eps=1e-12)
    n = n * torch.tensor([1.0, -1.0, -1.0], device=n.device, dtype=n.dtype)  # OpenCV -> x right, y up, z to viewer
    background = torch.tensor(BACKGROUND_NORMAL, device=n.device, dtype=n.dtype).expand_as(n)
    n = torch.where(alpha >= threshold, n, background)  # alpha [C, H, W, 1] broadcasts over xyz
    return encode_normals(n).permute(0, 3, 1, 2).contiguous()


def depth_map(depth: Tensor, alpha: Tensor, threshold: float = 0.5) -> Tensor:
    """Inverse-depth image [C, 3, H, W] in [0, 1] (near is bright, as MiDaS-style depth ControlNets expect)."""
    mask = alpha[..., 0] >= threshold
    inv = torch.where(mask, 1.0 / depth[..., 0].clamp_min(1e-6), torch.zeros_like(depth[..., 0]))
    lo = torch.stack([inv[i][mask[i]].min() if mask[i].any() else inv.new_zeros(()) for i in range(inv.shape[0])])
    hi = inv.flatten(1).max(dim=1).values
    img = ((inv - lo[:, None, None]) / (hi - lo).clamp_min(1e-6)[:, None, None]).clamp(0, 1) * mask
    return img[:, None].expand(-1, 3, -1, -1).contiguous()


# ----------------------------------------------------------------------------------------------
# Normals estimated from the RGB render (the "detector" control map)


def sobel(x: Tensor) -> tuple[Tensor, Tensor]:
    """Image-space gradients of x [C, H, W]: (d/d column, d/d row), each [C, H, W].

    OpenCV's `Sobel(ksize=3)`: the unnormalised 3x3 kernels, border reflected without repeating
    the edge pixel (BORDER_REFLECT_101 = torch's "reflect"), as controlnet_aux computes it.
    """
    smooth = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    diff = torch.tensor([-1.0, 0.0, 1.0], device=x.device, dtype=x.dtype)
    kernels = torch.stack([torch.outer(smooth, diff), torch.outer(diff, smooth)])[:, None]  # [2, 1, 3, 3]
    padded = F.pad(x[:, None], (1, 1, 1, 1), mode="reflect")  # [C, 1, H+2, W+2]
    g = F.conv2d(padded, kernels)  # [C, 2, H, W]
    return g[:, 0], g[:, 1]


def normals_from_relative_depth(disparity: Tensor, bg_threshold: float, normal_z: float) -> Tensor:
    """Normal image [C, 3, H, W] in [0, 1] from relative inverse depth [C, H, W] (MiDaS: larger = nearer).

    controlnet_aux's MiDaS recipe: gradients gx, gy of the raw disparity (Sobel), a constant z
    component `normal_z` (2 pi there), and gx = gy = 0 where the disparity, normalised to [0, 1]
    per image, is below `bg_threshold` (far background: flat, facing the viewer). Its map holds
    (gx, gy, z): disparity growing to the right means the surface turns to the left, so that map's
    x points left (and red is left, as in the NormalBAE encoding); here x is written in camera
    axes (x right, y up, z toward the viewer) and `encode_normals` gives the same colours.
    """
    d = disparity.float()
    gx, gy = sobel(d)
    lo = d.flatten(1).min(dim=1).values[:, None, None]
    hi = d.flatten(1).max(dim=1).values[:, None, None]
    normalised = (d - lo) / (hi - lo).clamp_min(torch.finfo(d.dtype).tiny)
    foreground = (normalised >= bg_threshold).to(d.dtype)
    # rows grow downward, so nearer-below (gy > 0) is a surface facing up: y up keeps gy's sign
    n = torch.stack([-gx * foreground, gy * foreground, torch.full_like(d, normal_z)], dim=-1)  # [C, H, W, 3]
    n = F.normalize(n, dim=-1)
    return encode_normals(n).permute(0, 3, 1, 2).contiguous()


def detector_pixels(images: Tensor, processor) -> Tensor:
    """Renders [B, 3, S, S] in [0, 1] -> the detector's input [B, 3, h, w] as its image processor makes it.

    The processor's own settings (size, mean/std) are used, done on tensors: the released code
    quantises the render to uint8 before its detector, so we do too.
    """
    x = (images.detach().clamp(0, 1) * 255).round() / 255
    size = processor.size
    h, w = size["height"], size["width"]
    if x.shape[-2:] != (h, w):
        # PIL's bicubic (the processor's resample) filters when it shrinks: antialias does the same
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    if getattr(processor, "do_normalize", True):
        mean = torch.tensor(processor.image_mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(processor.image_std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x


@torch.no_grad()
def detector_normal_map(images: Tensor, detector, processor, size: int, bg_threshold: float, normal_z: float) -> Tensor:
    """Normal map [B, 3, size, size] in [0, 1] estimated from the RGB renders [B, 3, S, S] alone.

    The depth network's relative disparity is resized (bicubic, as the processor's depth
    post-processing does) to `size`, the detect resolution, and turned into normals there
    (controlnet_aux runs its detector at 512 = SD's VAE input). No gradient flows.
    """
    pixels = detector_pixels(images, processor).to(device=detector.device, dtype=detector.dtype)
    disparity = detector(pixel_values=pixels).predicted_depth.float()  # [B, h, w]
    disparity = F.interpolate(disparity[:, None], size=(size, size), mode="bicubic", align_corners=False)[:, 0]
    return normals_from_relative_depth(disparity, bg_threshold, normal_z).to(images.device)
