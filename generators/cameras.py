"""Cameras: a batch of pinhole views, GaussianDreamer's training sampler, and fixed orbits.

Conventions (one for the whole project: training, output views and evaluation):
  * world frame: z up; azimuth 0 puts the camera on +x looking at the origin (the "front"),
    azimuth 90 on +y; elevation is the angle above the xy plane.
  * `c2w` is OpenGL/threestudio style (camera x right, y up, looking down -z).
  * `viewmats` is what gsplat wants: world-to-camera in OpenCV axes (x right, y down, z forward),
    viewmat = inv(c2w @ diag(1, -1, -1, 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from generators.config import CameraConfig


@dataclass
class Cameras:
    """A batch of C cameras looking at the origin."""

    c2w: Tensor  # [C, 4, 4] OpenGL camera-to-world
    fov_y: Tensor  # [C] radians
    width: int
    height: int
    elevation_deg: Tensor  # [C]
    azimuth_deg: Tensor  # [C] in (-180, 180]
    distance: Tensor  # [C]
    near: float = 0.01
    far: float = 100.0

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def viewmats(self) -> Tensor:  # [C, 4, 4] world -> camera, OpenCV axes
        flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=self.c2w.dtype, device=self.c2w.device))
        return torch.linalg.inv(self.c2w @ flip)

    @property
    def Ks(self) -> Tensor:  # [C, 3, 3] pixel intrinsics, principal point at the image centre
        focal = 0.5 * self.height / torch.tan(0.5 * self.fov_y)
        K = torch.zeros(len(self), 3, 3, dtype=self.c2w.dtype, device=self.c2w.device)
        K[:, 0, 0] = focal
        K[:, 1, 1] = focal
        K[:, 0, 2] = 0.5 * self.width
        K[:, 1, 2] = 0.5 * self.height
        K[:, 2, 2] = 1.0
        return K

    @property
    def positions(self) -> Tensor:  # [C, 3]
        return self.c2w[:, :3, 3]

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(
            self.c2w.to(device), self.fov_y.to(device), self.width, self.height,
            self.elevation_deg.to(device), self.azimuth_deg.to(device), self.distance.to(device),
            self.near, self.far,
        )

    def subset(self, index: Tensor | list[int]) -> "Cameras":
        return Cameras(
            self.c2w[index], self.fov_y[index], self.width, self.height, self.elevation_deg[index],
            self.azimuth_deg[index], self.distance[index], self.near, self.far,
        )


def look_at_c2w(position: Tensor) -> Tensor:
    """OpenGL camera-to-world matrices for cameras at `position` [C, 3] looking at the origin, z up."""
    forward = -position / position.norm(dim=-1, keepdim=True)  # camera looks down -z_cam
    up = torch.tensor([0.0, 0.0, 1.0], dtype=position.dtype, device=position.device).expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)
    # at the poles forward is parallel to up: fall back to +y as the up hint
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        alt_up = torch.tensor([0.0, 1.0, 0.0], dtype=position.dtype, device=position.device)
        right[degenerate] = torch.linalg.cross(forward[degenerate], alt_up.expand_as(forward[degenerate]), dim=-1)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.zeros(position.shape[0], 4, 4, dtype=position.dtype, device=position.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = true_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = position
    c2w[:, 3, 3] = 1.0
    return c2w


def spherical_to_position(elevation_deg: Tensor, azimuth_deg: Tensor, distance: Tensor) -> Tensor:
    """[C] x 3 -> [C, 3] camera centres in the z-up world frame."""
    el = torch.deg2rad(elevation_deg)
    az = torch.deg2rad(azimuth_deg)
    return torch.stack(
        [distance * torch.cos(el) * torch.cos(az), distance * torch.cos(el) * torch.sin(az), distance * torch.sin(el)],
        dim=-1,
    )


def make_cameras(
    elevation_deg: Tensor, azimuth_deg: Tensor, distance: Tensor, fov_y_deg: Tensor,
    width: int, height: int, near: float = 0.01, far: float = 100.0,
) -> Cameras:
    """Cameras on a sphere around the origin. All inputs [C] (float32)."""
    c2w = look_at_c2w(spherical_to_position(elevation_deg, azimuth_deg, distance))
    azimuth = torch.remainder(azimuth_deg + 180.0, 360.0) - 180.0
    return Cameras(c2w, torch.deg2rad(fov_y_deg), width, height, elevation_deg, azimuth, distance, near, far)


def sample_training_cameras(cfg: CameraConfig, generator: torch.Generator) -> Cameras:
    """GaussianDreamer's training batch: random distance, elevation, fov; stratified azimuth."""
    n = cfg.batch_size

    def uniform(lo: float, hi: float, size: int = n) -> Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=generator)

    distance = uniform(*cfg.distance_range)
    lo, hi = cfg.elevation_range_deg
    mode = cfg.elevation_sampling
    if mode in ("mixed", "mixed-threestudio"):
        # threestudio: half the batches uniform in degrees, half "uniform on the sphere"
        sphere = "uniform-sphere" if mode == "mixed" else "threestudio-sphere"
        mode = "uniform-degrees" if torch.rand(1, generator=generator).item() < 0.5 else sphere
    if mode == "uniform-degrees":
        elevation = uniform(lo, hi)
    elif mode == "uniform-sphere":
        s_lo, s_hi = math.sin(math.radians(lo)), math.sin(math.radians(hi))
        elevation = torch.rad2deg(torch.asin(uniform(s_lo, s_hi)))
    elif mode == "threestudio-sphere":
        # threestudio's inverse transform: sin(elevation) = 2u - 1 with u in [(lo+90)/180, (hi+90)/180],
        # i.e. sin(elevation) uniform on [lo / 90, hi / 90]
        u = uniform((lo + 90.0) / 180.0, (hi + 90.0) / 180.0)
        elevation = torch.rad2deg(torch.asin(2.0 * u - 1.0))
    else:
        raise ValueError(f"unknown elevation sampling {mode!r}")
    a_lo, a_hi = cfg.azimuth_range_deg
    if cfg.azimuth_stratified:
        azimuth = (torch.rand(n, generator=generator) + torch.arange(n)) / n * (a_hi - a_lo) + a_lo
    else:
        azimuth = uniform(a_lo, a_hi)
    fov = uniform(*cfg.fov_y_range_deg)
    return make_cameras(elevation, azimuth, distance, fov, cfg.width, cfg.height, cfg.near, cfg.far)


def orbit_cameras(
    n: int, elevation_deg: float, distance: float, fov_y_deg: float, width: int, height: int,
    start_azimuth_deg: float = 0.0, endpoint: bool = False,
) -> Cameras:
    """`n` views evenly spaced in azimuth at a fixed elevation (turntables, grids)."""
    azimuth = torch.linspace(0.0, 360.0, n + (0 if endpoint else 1))[:n] + start_azimuth_deg
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return make_cameras(full(elevation_deg), azimuth, full(distance), full(fov_y_deg), width, height)


def view_direction_names(cameras: Cameras, cfg: CameraConfig) -> list[str]:
    """'front' / 'side' / 'back' / 'overhead' per camera (threestudio order, last match wins)."""
    names = []
    for az, el in zip(cameras.azimuth_deg.tolist(), cameras.elevation_deg.tolist()):
        name = "side"
        if -cfg.front_threshold_deg < az < cfg.front_threshold_deg:
            name = "front"
        if az > 180.0 - cfg.back_threshold_deg or az < -180.0 + cfg.back_threshold_deg:
            name = "back"
        if el > cfg.overhead_threshold_deg:
            name = "overhead"
        names.append(name)
    return names


def view_dependent_prompts(prompt: str, cameras: Cameras, cfg: CameraConfig) -> list[str]:
    """The prompt with a view suffix per camera (or unchanged when view-dependent prompting is off)."""
    if not cfg.view_dependent_prompting:
        return [prompt] * len(cameras)
    suffix = {"front": cfg.suffix_front, "side": cfg.suffix_side, "back": cfg.suffix_back,
              "overhead": cfg.suffix_overhead}
    return [prompt + suffix[n] for n in view_direction_names(cameras, cfg)]
