"""Shap-E text-to-3D prior -> coloured point cloud in our world frame (GaussianDreamer's init).

    verts, colors = shap_e_point_cloud(models.shap_e, "a corgi", cfg.init.shap_e, generator)

Steps (gaussiandreamer-recipe.md section 1): sample Shap-E latents for the prompt with
classifier-free guidance, decode the latent to a mesh with the pipeline's own renderer
(`ShapERenderer.decode_to_mesh`: SDF on a regular grid, marching cubes, colour head queried at
the vertices), keep every vertex with its R, G, B channels, then rotate into our world frame.

Known difference from GaussianDreamer: it loads Shap-E's `text300M` in the original repo format
and overwrites its weights with Cap3D's finetune (`shapE_finetuned_with_330kdata.pth`, HF dataset
`tiange/Cap3D`), which exists only in that format. We load `openai/shap-e` in diffusers format,
i.e. the original text300M, so initial shapes can differ from GaussianDreamer's.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from generators.config import ShapEConfig


def axis_matrix(cfg: ShapEConfig) -> Tensor:
    """cfg.axis_transform as a 3x3 matrix M (row-major): world = M @ shap_e."""
    values = tuple(cfg.axis_transform)
    if len(values) != 9:
        raise ValueError(f"init.shap_e.axis_transform needs 9 numbers (a row-major 3x3 matrix), got {len(values)}")
    return torch.tensor(values, dtype=torch.float32).reshape(3, 3)


@torch.no_grad()
def shap_e_point_cloud(
    pipe, prompt: str, cfg: ShapEConfig, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """Shap-E mesh vertices and their colours for `prompt`.

    Returns verts [V, 3] in our world frame (Shap-E units: the object lies in [-1, 1]^3) and
    colors [V, 3] in [0, 1], both float32 on the CPU.
    """
    latents = pipe(
        prompt,
        guidance_scale=cfg.guidance_scale,
        num_inference_steps=cfg.num_inference_steps,
        generator=generator,
        frame_size=cfg.frame_size,
        output_type="latent",
    ).images  # [1, num_embeddings, embedding_dim]
    mesh = pipe.shap_e_renderer.decode_to_mesh(latents[0][None], pipe.device, grid_size=cfg.mesh_grid_size)
    verts = mesh.verts.float().cpu()  # [V, 3]
    if verts.shape[0] == 0:
        raise RuntimeError(f"Shap-E produced an empty mesh for prompt {prompt!r}")
    channels = mesh.vertex_channels
    colors = torch.stack([channels["R"], channels["G"], channels["B"]], dim=-1).float().cpu()  # [V, 3]
    colors = colors.clamp(0.0, 1.0)  # sigmoid outputs already lie in [0, 1]; guard fp16 rounding
    verts = verts @ axis_matrix(cfg).T
    return verts, colors
