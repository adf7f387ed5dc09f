"""gsplat backend: a thin wrapper around `gsplat.rasterization` (CUDA only).

gsplat is imported when this backend is first called, never at module import: on a machine
without a GPU it tries to JIT-build its CUDA extension and fails. Before that import, torch's
extension folder is pointed at the shared one `make gsplat` builds into (gsplat_build.py), so a
run loads the prebuilt extension instead of compiling its own.

Colour semantics match the dense renderer: the Gaussians' SH coefficients go in with
sh_degree = gaussians.sh_degree, so gsplat evaluates SH along (mean - camera centre), adds 0.5
and clamps at >= 0; with degree 0 that is SH_C0 * sh0 + 0.5 (projection.sh_colors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from generators.cameras import Cameras
from generators.config import RenderConfig
from generators.gaussians import Gaussians
from generators.render.types import RenderOutput


def render_gsplat(gaussians: Gaussians, cameras: Cameras, cfg: RenderConfig, background: Tensor) -> RenderOutput:
    """Render every camera with gsplat; background [3]. Same outputs and meanings as render_dense."""
    from generators.render.gsplat_build import use_shared_extensions_dir

    use_shared_extensions_dir()
    from gsplat import rasterization  # lazy: needs CUDA

    C, N = len(cameras), len(gaussians)
    dtype = gaussians.means.dtype
    backgrounds = background.to(device=gaussians.device, dtype=dtype).expand(C, 3).contiguous()  # [C, 3]
    renders, alphas, meta = rasterization(
        means=gaussians.means,
        quats=gaussians.quats_normalized,
        scales=gaussians.scales_act,
        opacities=gaussians.opacities_act,
        colors=gaussians.sh_coeffs,  # [N, K, 3]
        viewmats=cameras.viewmats.to(dtype),
        Ks=cameras.Ks.to(dtype),
        width=cameras.width,
        height=cameras.height,
        near_plane=cameras.near,
        far_plane=cameras.far,
        eps2d=cfg.eps2d,
        sh_degree=gaussians.sh_degree,
        packed=cfg.packed,
        rasterize_mode=cfg.rasterize_mode,
        backgrounds=backgrounds,
        render_mode="RGB+ED",
    )
    if cfg.packed:
        means2d, radii = unpack_screen_meta(meta["means2d"], meta["radii"], meta["camera_ids"], meta["gaussian_ids"], C, N)
    else:
        means2d, radii = meta["means2d"], meta["radii"].amax(dim=-1)  # radii [C, N, 2] -> [C, N]
        if means2d.requires_grad:
            means2d.retain_grad()  # densification reads means2d.grad
    return RenderOutput(rgb=renders[..., :3], alpha=alphas, depth=renders[..., 3:4], means2d=means2d, radii=radii)


def unpack_screen_meta(
    means2d_packed: Tensor, radii_packed: Tensor, camera_ids: Tensor, gaussian_ids: Tensor, C: int, N: int
) -> tuple[Tensor, Tensor]:
    """Packed gsplat meta -> means2d [C, N, 2] (zeros where not visible) and radii [C, N].

    means2d_packed [nnz, 2], radii_packed [nnz, 2], camera_ids / gaussian_ids [nnz].

    The packed means2d is what the rasterizer used, so only it receives a gradient. The [C, N, 2]
    tensor returned is a plain copy; a hook copies the packed gradient into its `.grad` (summed
    over backward passes, as autograd does for a retained gradient) so that densification can read
    `means2d.grad` in either mode.
    """
    dense = torch.zeros(C, N, 2, dtype=means2d_packed.dtype, device=means2d_packed.device)
    dense[camera_ids, gaussian_ids] = means2d_packed.detach()
    radii = torch.zeros(C, N, dtype=radii_packed.dtype, device=radii_packed.device)
    radii[camera_ids, gaussian_ids] = radii_packed.amax(dim=-1)
    if means2d_packed.requires_grad:

        def scatter_grad(grad: Tensor) -> None:
            full = torch.zeros_like(dense)
            full[camera_ids, gaussian_ids] = grad
            dense.grad = full if dense.grad is None else dense.grad + full

        means2d_packed.register_hook(scatter_grad)
    return dense, radii
