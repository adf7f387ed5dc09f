"""Shap-E on the tiny set: a coloured point cloud in our world frame; marching-cubes tables."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from generators.config import ShapEConfig
from generators.models.loader import load_models
from generators.models.shap_e import axis_matrix, shap_e_point_cloud
from generators.models.tiny import marching_cubes_tables

CFG = ShapEConfig(num_inference_steps=2, mesh_grid_size=32)


@pytest.fixture(scope="module")
def pipe():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        return load_models("tiny", {"shap_e"}, "cpu").shap_e
    finally:
        mp.undo()


def test_point_cloud_is_finite_coloured_and_seeded(pipe):
    verts, colors = shap_e_point_cloud(pipe, "a red cube", CFG, torch.Generator().manual_seed(0))
    assert verts.ndim == 2 and verts.shape[1] == 3 and verts.shape[0] > 0
    assert colors.shape == verts.shape
    assert torch.isfinite(verts).all() and torch.isfinite(colors).all()
    assert colors.min() >= 0 and colors.max() <= 1
    assert verts.abs().max() <= 1.0 + 1e-5  # Shap-E's volume is [-1, 1]^3
    again, _ = shap_e_point_cloud(pipe, "a red cube", CFG, torch.Generator().manual_seed(0))
    assert torch.equal(verts, again)


def test_axis_transform_is_applied(pipe):
    small = dataclasses.replace(CFG, mesh_grid_size=16)
    identity = dataclasses.replace(small, axis_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    raw, _ = shap_e_point_cloud(pipe, "a chair", identity, torch.Generator().manual_seed(3))
    ours, _ = shap_e_point_cloud(pipe, "a chair", small, torch.Generator().manual_seed(3))
    assert torch.allclose(ours, raw @ axis_matrix(CFG).T)


def test_default_axis_transform_maps_shap_e_up_and_front_to_ours():
    M = axis_matrix(ShapEConfig()).double()
    assert torch.allclose(M @ M.T, torch.eye(3, dtype=M.dtype)) and torch.det(M).item() == pytest.approx(1.0)
    assert torch.equal(M @ torch.tensor([0.0, 0, 1], dtype=M.dtype), torch.tensor([0.0, 0, 1], dtype=M.dtype))  # up stays z
    assert torch.equal(M @ torch.tensor([0.0, -1, 0], dtype=M.dtype), torch.tensor([1.0, 0, 0], dtype=M.dtype))  # front -> +x


def test_marching_cubes_tables_mesh_a_sphere_watertight_and_outward():
    from diffusers.pipelines.shap_e.renderer import MeshDecoder

    decoder = MeshDecoder()
    cases, masks = marching_cubes_tables()
    decoder.cases.copy_(cases)
    decoder.masks.copy_(masks)
    g = torch.linspace(-1, 1, 24)
    X, Y, Z = torch.meshgrid(g, g, g, indexing="ij")
    field = 0.6 - (X**2 + Y**2 + (Z - 0.1) ** 2).sqrt()  # positive inside, as Shap-E's SDF
    mesh = decoder(field, torch.tensor([-1.0, -1, -1]), torch.tensor([2.0, 2, 2]))
    v, f = mesh.verts, mesh.faces
    r = (v - torch.tensor([0, 0, 0.1])).norm(dim=-1)
    assert f.shape[0] > 100 and (r - 0.6).abs().max() < 0.01
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(dim=1).values
    _, counts = torch.unique(edges, dim=0, return_counts=True)
    assert (counts == 2).all()  # closed surface
    normal = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    outward = (normal * (v[f].mean(1) - torch.tensor([0, 0, 0.1]))).sum(-1)
    assert (outward > 0).all()
