"""Textured meshes from a run's 3D Gaussians (what threestudio / GaussianDreamer users export).

    mesh = extract_mesh(gaussians, MeshExportConfig())   # density grid -> marching cubes -> vertex colours
    write_ply(path, mesh); write_obj(path, mesh)         # generators.mesh.io
    mesh = read_mesh(path)                               # ours, or any OBJ (vertex colours or a map_Kd texture)

    python -m generators.mesh RUN_DIR... [--resolution 256]   # writes mesh.ply + mesh.obj beside gaussians.ply

metrics.mesh_render renders such a mesh as T3Bench renders its meshes (EvalConfig.source = mesh).
"""

from generators.mesh.mesh import Mesh

__all__ = ["Mesh"]
