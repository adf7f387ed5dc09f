"""EWA projection of 3D Gaussians into pinhole cameras, and their view-dependent colours.

Pure PyTorch, differentiable, any float dtype. It reproduces what gsplat 1.5.3 computes before
rasterising (`fully_fused_projection` CUDA kernel and `rasterization()`'s SH step), so the dense
CPU renderer and the gsplat backend agree:

  * covariance  Sigma = R S S^T R^T from normalised wxyz quaternions and activated scales;
  * camera      means_c = R_v means + t_v, Sigma_c = R_v Sigma R_v^T (OpenCV axes, z forward);
  * pinhole     J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]] with tx/z, ty/z clamped to
                1.3x the field of view (gsplat's guard against huge off-screen Jacobians);
                cov2d = J Sigma_c J^T + eps2d I, means2d = (fx x/z + cx, fy y/z + cy);
  * antialiased opacity * sqrt(det(cov2d) / det(cov2d + eps2d I));
  * culling     z outside [near, far], det <= 0, opacity < 1/255, or the 2D box outside the
                image: radii 0;
  * radius      per axis ceil(extend * sqrt(cov2d[i, i])) with the opacity-aware
                extend = min(3.33, sqrt(2 ln(255 opacity))): beyond it alpha < 1/255, so every
                pixel a Gaussian touches lies inside its box;
  * colour      SH evaluated along (mean - camera centre), + 0.5, clamped at >= 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.gaussians.model import quat_to_rotmat

# Alpha below which gsplat skips a Gaussian at a pixel (ALPHA_THRESHOLD in gsplat's Common.h).
ALPHA_THRESHOLD = 1.0 / 255.0
# gsplat's largest box half-width in standard deviations: exp(-3.33^2 / 2) ~= 1/255.
MAX_EXTEND_SIGMAS = 3.33
# gsplat clamps the Jacobian's tx/z to the half field of view plus this fraction of it.
JACOBIAN_FOV_MARGIN = 0.3

# Real spherical-harmonic basis constants (the Inria / gsplat convention), degrees 0..3.
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
    -0.4570457994644658, 1.445305721320277, -0.5900435899266435,
)


@dataclass
class Projected:
    """Per-camera screen-space Gaussians. Entries with radii 0 are culled and hold unspecified (finite) values."""

    means2d: Tensor  # [C, N, 2] centres in pixels
    conics: Tensor  # [C, N, 3] (a, b, c) of the inverse dilated 2D covariance [[a, b], [b, c]]
    depths: Tensor  # [C, N] camera-space z
    opacities: Tensor  # [C, N] opacity used for alpha (times the compensation in antialiased mode)
    radii: Tensor  # [C, N, 2] int32 box half-widths in pixels (x, y); 0 = culled
    cov2d: Tensor  # [C, N, 2, 2] dilated 2D covariance (cov2d + eps2d I)


def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """quats [N, 4] wxyz, scales [N, 3] standard deviations -> Sigma [N, 3, 3] = (R S)(R S)^T."""
    m = quat_to_rotmat(quats) * scales[..., None, :]  # R @ diag(s): scale the columns
    return m @ m.transpose(-1, -2)


def world_to_camera(means: Tensor, covars: Tensor, viewmats: Tensor) -> tuple[Tensor, Tensor]:
    """means [N, 3], covars [N, 3, 3], viewmats [C, 4, 4] -> means_c [C, N, 3], covars_c [C, N, 3, 3]."""
    rot = viewmats[:, :3, :3]  # [C, 3, 3]
    trans = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", rot, means) + trans[:, None, :]
    covars_c = torch.einsum("cij,njk,clk->cnil", rot, covars, rot)
    return means_c, covars_c


def perspective_project(
    means_c: Tensor, covars_c: Tensor, Ks: Tensor, width: int, height: int, depth_ok: Tensor
) -> tuple[Tensor, Tensor]:
    """Pinhole EWA: means_c [C, N, 3], covars_c [C, N, 3, 3], Ks [C, 3, 3] -> means2d [C, N, 2], cov2d [C, N, 2, 2].

    `depth_ok` [C, N] marks Gaussians in front of the camera; the others get z = 1 so that no
    division by ~0 puts inf/NaN into the graph (they are culled and never rasterised).
    """
    x, y, z = means_c.unbind(-1)  # [C, N] each
    z = torch.where(depth_ok, z, torch.ones_like(z))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + JACOBIAN_FOV_MARGIN * tan_fovx
    lim_x_neg = cx / fx + JACOBIAN_FOV_MARGIN * tan_fovx
    lim_y_pos = (height - cy) / fy + JACOBIAN_FOV_MARGIN * tan_fovy
    lim_y_neg = cy / fy + JACOBIAN_FOV_MARGIN * tan_fovy
    tx = z * torch.minimum(torch.maximum(x / z, -lim_x_neg), lim_x_pos)
    ty = z * torch.minimum(torch.maximum(y / z, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], dim=-1)
    jac = jac.reshape(z.shape + (2, 3))  # [C, N, 2, 3]
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return means2d, cov2d


def project_gaussians(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
    width: int, height: int, near: float, far: float, eps2d: float, antialiased: bool,
) -> Projected:
    """means [N, 3], quats [N, 4], scales [N, 3] (activated), opacities [N] (activated),
    viewmats [C, 4, 4] world->camera OpenCV, Ks [C, 3, 3] -> Projected (see the module docstring)."""
    means_c, covars_c = world_to_camera(means, covariance_3d(quats, scales), viewmats)
    depths = means_c[..., 2]  # [C, N]
    depth_ok = (depths >= near) & (depths <= far) & (depths > 0)
    means2d, cov2d = perspective_project(means_c, covars_c, Ks, width, height, depth_ok)

    det_orig = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    eye = torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    cov2d = cov2d + eps2d * eye
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack(
        [cov2d[..., 1, 1] / det_safe, -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]) / det_safe, cov2d[..., 0, 0] / det_safe],
        dim=-1,
    )

    opac = opacities[None, :].expand(depths.shape)  # [C, N]
    if antialiased:
        # the floor keeps sqrt's gradient finite for flat Gaussians (det_orig = 0); such a
        # Gaussian's opacity (<= 1e-6) is culled below anyway
        opac = opac * torch.sqrt((det_orig / det_safe).clamp_min(1e-12))

    with torch.no_grad():
        radii = _screen_radii(means2d, cov2d, opac, depth_ok & det_ok, width, height)
    return Projected(means2d=means2d, conics=conics, depths=depths, opacities=opac, radii=radii, cov2d=cov2d)


def _screen_radii(means2d: Tensor, cov2d: Tensor, opac: Tensor, ok: Tensor, width: int, height: int) -> Tensor:
    """[C, N, 2] int32 box half-widths, 0 for culled Gaussians (gsplat 1.5.3's rules)."""
    ok = ok & (opac >= ALPHA_THRESHOLD)
    # opacity-aware extent (gsplat; arXiv 2402.00525 B.2): alpha = 1/255 on the box's ellipse
    extend = torch.sqrt(2.0 * torch.log((opac / ALPHA_THRESHOLD).clamp_min(1.0))).clamp_max(MAX_EXTEND_SIGMAS)
    var = torch.stack([cov2d[..., 0, 0], cov2d[..., 1, 1]], dim=-1).clamp_min(0.0)
    radius = torch.ceil(extend[..., None] * torch.sqrt(var))  # [C, N, 2]
    ok = ok & (radius > 0).any(dim=-1)  # radius_clip = 0
    inside = (
        (means2d[..., 0] + radius[..., 0] > 0) & (means2d[..., 0] - radius[..., 0] < width)
        & (means2d[..., 1] + radius[..., 1] > 0) & (means2d[..., 1] - radius[..., 1] < height)
    )
    ok = ok & inside
    return torch.where(ok[..., None], radius, torch.zeros_like(radius)).to(torch.int32)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis up to `degree` (0..3) at unit directions dirs [..., 3] -> [..., (degree+1)^2]."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree {degree} is not supported (0..3)")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_colors(sh_coeffs: Tensor, degree: int, means: Tensor, campos: Tensor) -> Tensor:
    """sh_coeffs [N, K, 3], means [N, 3], campos [C, 3] -> colours [C, N, 3] = max(SH(dir) + 0.5, 0).

    dir = mean - camera centre, as gsplat's rasterization() does; with degree 0 the colour is
    SH_C0 * sh0 + 0.5 for every camera.
    """
    k = (degree + 1) ** 2
    if k > sh_coeffs.shape[1]:
        raise ValueError(f"SH degree {degree} needs {k} coefficients, got {sh_coeffs.shape[1]}")
    if degree == 0:
        rgb = SH_C0 * sh_coeffs[:, 0, :]  # [N, 3]
        rgb = rgb[None].expand(campos.shape[0], -1, -1)
    else:
        dirs = F.normalize(means[None, :, :] - campos[:, None, :], dim=-1)  # [C, N, 3]
        rgb = torch.einsum("cnk,nkd->cnd", sh_basis(degree, dirs), sh_coeffs[:, :k, :])
    return (rgb + 0.5).clamp_min(0.0)

