"""The ToyWorld judge: an independent CNN that says which objects an image shows.

Heads (all from one shared trunk of 6 conv layers):
  objects [16]  multi-label: each (shape, colour) present     (ObjectSpec.index order)
  colours [4]   multi-label: each colour present
  shapes  [4]   multi-label: each shape present
  count   [K]   1..K objects

The predicted object set is the `count` highest object logits, so "exact set" accuracy asks for
the right number of objects with the right shape and colour each.

Saved as `judge.safetensors` + `judge.json` (architecture and label order) in one folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from generators.io import atomic_write, atomic_write_json
from generators.toyworld.config import COLOURS, SHAPES, JudgeConfig

N_OBJECTS = len(SHAPES) * len(COLOURS)
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25  # input normalisation, fixed with the architecture


class JudgeNet(nn.Module):
    def __init__(self, channels: tuple[int, ...], max_objects: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i in (1, 3):  # 32 -> 16 -> 8
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.trunk = nn.Sequential(*layers)
        feat = 2 * c_in  # average and max pooled
        self.objects = nn.Linear(feat, N_OBJECTS)
        self.colours = nn.Linear(feat, len(COLOURS))
        self.shapes = nn.Linear(feat, len(SHAPES))
        self.count = nn.Linear(feat, max_objects)
        self.max_objects = max_objects

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images [B, 3, H, W] in [0, 1] -> logits per head."""
        x = self.trunk((images - PIXEL_MEAN) / PIXEL_STD)
        f = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return {"objects": self.objects(f), "colours": self.colours(f), "shapes": self.shapes(f),
                "count": self.count(f)}


def predict_sets(logits: dict[str, Tensor]) -> dict[str, Tensor]:
    """Logits -> predictions: count [B] (1-based), objects/colours/shapes multi-hot [B, *], and
    object_prob [B, 16], each object's presence probability (how sure the judge is of its set)."""
    count = logits["count"].argmax(dim=1) + 1
    order = logits["objects"].argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
    objects = (rank < count[:, None]).float()
    return {"count": count, "objects": objects, "colours": (logits["colours"] > 0).float(),
            "shapes": (logits["shapes"] > 0).float(), "object_prob": torch.sigmoid(logits["objects"])}


def labels_from_objects(objects: Tensor) -> dict[str, Tensor]:
    """objects [B, 3] class ids (-1 = none) -> multi-hot targets of every head and the count."""
    b = objects.shape[0]
    multi = torch.zeros(b, N_OBJECTS)
    present = objects >= 0
    rows = torch.arange(b)[:, None].expand_as(objects)
    multi[rows[present], objects[present]] = 1.0
    per = multi.view(b, len(SHAPES), len(COLOURS))
    return {"objects": multi, "shapes": (per.sum(2) > 0).float(), "colours": (per.sum(1) > 0).float(),
            "count": present.sum(1)}


class Judge:
    """A trained judge, ready to score images."""

    def __init__(self, net: JudgeNet, config: dict):
        self.net = net.eval()
        self.config = config

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 512) -> dict[str, Tensor]:
        """images [B, H, W, 3] in [0, 1] -> predictions (see `predict_sets`)."""
        outs = []
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].permute(0, 3, 1, 2).float()
            outs.append(predict_sets(self.net(x)))
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def build_judge(cfg: JudgeConfig) -> JudgeNet:
    return JudgeNet(tuple(cfg.channels), cfg.max_objects)


def save_judge(folder: str | Path, net: JudgeNet, cfg: JudgeConfig) -> None:
    folder = Path(folder)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    atomic_write(folder / "judge.safetensors", lambda p: save_file(state, str(p)))
    atomic_write_json(folder / "judge.json", {
        "architecture": "toyworld-judge-v1", "channels": list(cfg.channels), "max_objects": cfg.max_objects,
        "shapes": list(SHAPES), "colours": list(COLOURS), "pixel_mean": PIXEL_MEAN, "pixel_std": PIXEL_STD,
        "input": "[B, 3, 32, 32] RGB in [0, 1]", "recipe": asdict(cfg),
    })


def load_judge(folder: str | Path) -> Judge:
    folder = Path(folder)
    meta = json.loads((folder / "judge.json").read_text())
    if meta["shapes"] != list(SHAPES) or meta["colours"] != list(COLOURS):
        raise ValueError(f"{folder}: judge label order differs from this code's ToyWorld")
    net = JudgeNet(tuple(meta["channels"]), meta["max_objects"])
    net.load_state_dict(load_file(str(folder / "judge.safetensors")))
    return Judge(net, meta)


def halo_bank(n: int, size: int, generator: torch.Generator, points: int = 2048, radius: float = 0.9,
              opacity: float = 0.05) -> tuple[Tensor, Tensor]:
    """n renders of a faint ball of random-colour Gaussians (the `toy` set's initial ball) from
    random ToyWorld cameras, through our rasterizer: (premultiplied rgb [n, 3, H, W], alpha [n, 1, H, W])."""
    from generators.config import InitConfig, RenderConfig
    from generators.gaussians.init import init_ball
    from generators.render import render
    from generators.toyworld.config import ViewSampling
    from generators.toyworld.data import sample_views

    rgbs, alphas = [], []
    black = torch.zeros(3)
    with torch.no_grad():
        for _ in range(n):
            ball = init_ball(InitConfig(kind="ball", ball_points=points, ball_radius=radius, opacity=opacity), generator)
            out = render(ball, sample_views(1, ViewSampling(), size, generator), RenderConfig(backend="dense"), black)
            rgbs.append(out.rgb[0].permute(2, 0, 1))  # over black = premultiplied colour
            alphas.append(out.alpha[0].permute(2, 0, 1))
    return torch.stack(rgbs), torch.stack(alphas)


def add_halo(images: Tensor, bank: tuple[Tensor, Tensor], prob: float, generator: torch.Generator) -> Tensor:
    """Lay a random halo of the bank over some images [B, 3, H, W], its alpha scaled by U[0, 1]
    (fewer or fainter floaters); the label is unchanged: floaters are not objects."""
    b = images.shape[0]
    rgb, alpha = bank
    pick = torch.randint(0, rgb.shape[0], (b,), generator=generator)
    amount = torch.rand(b, 1, 1, 1, generator=generator) * (torch.rand(b, 1, 1, 1, generator=generator) < prob)
    return images * (1.0 - amount * alpha[pick]) + amount * rgb[pick]


def zoom(images: Tensor, background: float, prob: float, lowest: float, highest: float,
         generator: torch.Generator) -> Tensor:
    """Scale some images [B, 3, H, W] about their centre by a factor U[lowest, highest] (> 1: the
    scene drawn larger, as a run may draw it; ToyWorld varies sizes by 8% at most), bilinear,
    the background filling what a zoom-out uncovers; the label is unchanged."""
    b = images.shape[0]
    on = torch.rand(b, generator=generator) < prob
    factor = lowest + (highest - lowest) * torch.rand(b, generator=generator)
    factor = torch.where(on, factor, torch.ones_like(factor))
    theta = torch.zeros(b, 2, 3, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor  # output pixel -> input pixel: a factor > 1 samples nearer the centre
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + background


def darken(images: Tensor, background: float, prob: float, lowest: float, generator: torch.Generator) -> Tensor:
    """Darken the object pixels (those off the background) of some images by a factor U[lowest, 1]."""
    b = images.shape[0]
    factor = lowest + (1.0 - lowest) * torch.rand(b, 1, 1, 1, generator=generator)
    factor = torch.where(torch.rand(b, 1, 1, 1, generator=generator) < prob, factor, torch.ones_like(factor))
    on_object = ((images - background).abs().amax(dim=1, keepdim=True) > 0.02).float()
    return images * (1.0 - on_object + on_object * factor)


def augment(images: Tensor, cfg: JudgeConfig, generator: torch.Generator, bank=None, background: float = 0.35) -> Tensor:
    """Judge training augmentation on [B, 3, H, W]: (darkening, halo, zoom when on), flip, shift,
    blur, brightness, pixel noise."""
    b = images.shape[0]
    if cfg.aug_zoom_prob > 0:
        images = zoom(images, background, cfg.aug_zoom_prob, cfg.aug_zoom_min, cfg.aug_zoom_max, generator)
    if cfg.aug_dark_prob > 0:
        images = darken(images, background, cfg.aug_dark_prob, cfg.aug_dark_min, generator)
    if bank is not None and cfg.aug_halo_prob > 0:
        images = add_halo(images, bank, cfg.aug_halo_prob, generator)
    flip = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    images = random_shift(images, cfg.aug_shift_px, generator)
    blur = torch.rand(b, generator=generator) < cfg.aug_blur_prob
    sigma = 0.3 + (cfg.aug_blur_sigma_max - 0.3) * torch.rand(b, generator=generator)
    images = torch.where(blur[:, None, None, None], gaussian_blur(images, sigma), images)
    bright = 1.0 + 0.1 * (2.0 * torch.rand(b, 1, 1, 1, generator=generator) - 1.0)
    std = cfg.aug_noise_max * torch.rand(b, 1, 1, 1, generator=generator)
    noise = torch.randn(images.shape, generator=generator) * std
    return (images * bright + noise).clamp(0.0, 1.0)


def random_shift(images: Tensor, max_px: int, generator: torch.Generator) -> Tensor:
    """Shift each image [B, C, H, W] by up to max_px in x and y, edges replicated."""
    if max_px <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_px,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * max_px + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_px + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])  # [B, H]
    cols = (dx[:, None] + torch.arange(w)[None])  # [B, W]
    idx_b = torch.arange(b)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def gaussian_blur(images: Tensor, sigma: Tensor, radius: int = 2) -> Tensor:
    """Separable Gaussian blur with a per-image sigma [B] (px) on [B, C, H, W]."""
    b, c, h, w = images.shape
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    k = torch.exp(-0.5 * (x[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # [B, 2r+1]
    kernel = k.repeat_interleave(c, dim=0)  # [B*C, 2r+1]
    flat = F.pad(images.reshape(1, b * c, h, w), (radius,) * 4, mode="replicate")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)
