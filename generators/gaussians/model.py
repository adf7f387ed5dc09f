"""The 3D Gaussians of one run: a dict of parameters, named as gsplat's strategies name them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

SH_C0 = 0.28209479177387814  # Y_0^0; colour = SH_C0 * sh0 + 0.5 (Inria / gsplat convention)


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """[N, 3] colours in [0, 1] -> [N, 1, 3] DC coefficients."""
    return ((rgb - 0.5) / SH_C0)[:, None, :]


def inverse_sigmoid(x: Tensor) -> Tensor:
    return torch.log(x / (1.0 - x))


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] wxyz (normalised here, any norm accepted) -> [..., 3, 3] rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


class Gaussians(nn.Module):
    """N anisotropic 3D Gaussians.

    Parameters (stored raw; activations applied by the accessors):
      means      [N, 3]         world positions
      scales     [N, 3]         log standard deviations
      quats      [N, 4]         rotations, wxyz, not necessarily normalised
      opacities  [N]            logits
      sh0        [N, 1, 3]      DC spherical-harmonic coefficients
      shN        [N, K - 1, 3]  higher-order coefficients, K = (sh_degree + 1) ** 2
    """

    param_names = ("means", "scales", "quats", "opacities", "sh0", "shN")

    def __init__(self, means: Tensor, scales: Tensor, quats: Tensor, opacities: Tensor, sh0: Tensor,
                 shN: Tensor, sh_degree: int = 0):
        super().__init__()
        self.sh_degree = int(sh_degree)
        k = (self.sh_degree + 1) ** 2
        n = means.shape[0]
        assert means.shape == (n, 3) and scales.shape == (n, 3) and quats.shape == (n, 4)
        assert opacities.shape == (n,) and sh0.shape == (n, 1, 3) and shN.shape == (n, k - 1, 3)
        self.params = nn.ParameterDict(
            {name: nn.Parameter(t.detach().clone().float().contiguous())
             for name, t in zip(self.param_names, (means, scales, quats, opacities, sh0, shN))}
        )

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_points(cls, points: Tensor, colors: Tensor, scales: Tensor, opacity: float,
                    sh_degree: int = 0) -> "Gaussians":
        """Isotropic Gaussians at `points` [N,3] with `colors` [N,3] in [0,1] and std `scales` [N]."""
        n = points.shape[0]
        k = (sh_degree + 1) ** 2
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        return cls(
            means=points,
            scales=torch.log(scales.clamp_min(1e-12))[:, None].expand(n, 3),
            quats=quats,
            opacities=inverse_sigmoid(torch.full((n,), float(opacity))),
            sh0=rgb_to_sh0(colors),  # not clamped: GaussianDreamer jitters colours above 1
            shN=torch.zeros(n, k - 1, 3),
            sh_degree=sh_degree,
        )

    # -- accessors ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def means(self) -> Tensor:
        return self.params["means"]

    @property
    def scales_act(self) -> Tensor:  # [N, 3] standard deviations
        return torch.exp(self.params["scales"])

    @property
    def quats_normalized(self) -> Tensor:  # [N, 4] wxyz
        return torch.nn.functional.normalize(self.params["quats"], dim=-1)

    @property
    def opacities_act(self) -> Tensor:  # [N] in (0, 1)
        return torch.sigmoid(self.params["opacities"])

    @property
    def sh_coeffs(self) -> Tensor:  # [N, K, 3]
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def state(self) -> dict:
        return {"sh_degree": self.sh_degree, **{k: v.detach().cpu() for k, v in self.params.items()}}

    @classmethod
    def from_state(cls, state: dict) -> "Gaussians":
        return cls(**{k: state[k] for k in cls.param_names}, sh_degree=state["sh_degree"])

