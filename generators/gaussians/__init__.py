"""3D Gaussians: parameters, initialisation, densification, .ply export."""

from generators.gaussians.model import SH_C0, Gaussians, rgb_to_sh0

__all__ = ["Gaussians", "SH_C0", "rgb_to_sh0"]
