"""A run's mesh, exported once and kept beside its Gaussians.

    mesh, record = run_mesh(run_dir, MeshExportConfig())   # reads mesh.ply when it was made with these
                                                          # settings, else exports and writes it
Files in the run directory: mesh.ply (binary, vertex colours), mesh.obj (the same, for other tools),
mesh.json ({export: settings, vertices, faces, bounds, export_s}).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from generators.io import atomic_write_json
from generators.mesh.extract import MeshExportConfig, extract_mesh, mesh_stats
from generators.mesh.io import read_mesh, write_obj, write_ply
from generators.mesh.mesh import Mesh

MESH_FILES = {"ply": "mesh.ply", "obj": "mesh.obj", "record": "mesh.json"}
NON_RESULT_KEYS = ("chunk_elements",)  # memory only: a mesh made with another chunk size is the same mesh


def export_settings(cfg: MeshExportConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in NON_RESULT_KEYS}


def run_mesh(run_dir: str | Path, cfg: MeshExportConfig, gaussians=None) -> tuple[Mesh, dict]:
    """The run's mesh for these export settings: the kept one, or a new export (written atomically)."""
    from generators.gaussians.ply import load_ply
    from generators.outputs import RUN_FILES

    run_dir = Path(run_dir)
    record_path = run_dir / MESH_FILES["record"]
    kept: Optional[dict] = None
    try:
        kept = json.loads(record_path.read_text())
    except (OSError, ValueError):
        pass
    if kept and kept.get("export") == export_settings(cfg) and (run_dir / MESH_FILES["ply"]).is_file():
        return read_mesh(run_dir / MESH_FILES["ply"]), kept
    if gaussians is None:
        gaussians = load_ply(run_dir / RUN_FILES["ply"])
    t = time.perf_counter()
    mesh = extract_mesh(gaussians.to("cpu"), cfg)
    export_s = time.perf_counter() - t
    write_ply(run_dir / MESH_FILES["ply"], mesh)
    write_obj(run_dir / MESH_FILES["obj"], mesh)
    record = {"export": export_settings(cfg), **mesh_stats(mesh), "export_s": export_s}
    atomic_write_json(record_path, record)
    # what is scored is the file (8-bit colours), so a later evaluation of the kept mesh scores the same
    return read_mesh(run_dir / MESH_FILES["ply"]), record
