"""Meshes on disk: .ply (binary, vertex colours) and .obj (vertex colours, or a map_Kd texture).

    write_ply(path, mesh)   # binary_little_endian: x y z (float) red green blue (uchar); faces as uchar-int lists
    write_obj(path, mesh)   # `v x y z r g b` (colours in 0..1, read by MeshLab, trimesh, Blender) and `f a b c`
    mesh = read_mesh(path)  # what we write, ASCII .ply, and OBJ exports such as threestudio's /
                            # T3Bench's (model.obj + model.mtl + texture_kd.jpg: v, vt, f v/vt[/vn], map_Kd)

Polygons are split into triangle fans. Writes are atomic.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import torch

from generators.errors import UserError
from generators.io import atomic_write
from generators.mesh.mesh import Mesh


class MeshFileError(UserError):
    """A mesh file that cannot be read."""


def _colors_u8(mesh: Mesh) -> np.ndarray:
    colors = mesh.vertex_colors if mesh.vertex_colors is not None else torch.ones_like(mesh.vertices)
    return (colors.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def write_ply(path: str | Path, mesh: Mesh) -> Path:
    v = mesh.vertices.detach().cpu().numpy().astype("<f4")
    f = mesh.faces.detach().cpu().numpy().astype("<i4")
    header = (f"ply\nformat binary_little_endian 1.0\ncomment generators.mesh\nelement vertex {len(v)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n").encode("ascii")
    verts = np.empty(len(v), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    verts["p"], verts["c"] = v, _colors_u8(mesh)
    faces = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", 3)])
    faces["n"], faces["i"] = 3, f

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(header)
            fh.write(verts.tobytes())
            fh.write(faces.tobytes())

    return atomic_write(path, write)


def write_obj(path: str | Path, mesh: Mesh) -> Path:
    v = mesh.vertices.detach().cpu().numpy()
    colors = mesh.vertex_colors if mesh.vertex_colors is not None else torch.ones_like(mesh.vertices)
    c = colors.detach().cpu().clamp(0, 1).numpy()
    lines = ["# generators.mesh: vertex colours as `v x y z r g b`"]
    lines += [f"v {a:.6f} {b:.6f} {d:.6f} {r:.4f} {g:.4f} {bl:.4f}" for (a, b, d), (r, g, bl) in zip(v, c)]
    lines += [f"f {i + 1} {j + 1} {k + 1}" for i, j, k in mesh.faces.detach().cpu().numpy()]
    text = "\n".join(lines) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="ascii"))


# ----------------------------------------------------------------------------------------------
# Reading


_PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "<i2", "ushort": "<u2", "int": "<i4", "uint": "<u4",
              "float": "<f4", "double": "<f8", "int8": "i1", "uint8": "u1", "int16": "<i2", "uint16": "<u2",
              "int32": "<i4", "uint32": "<u4", "float32": "<f4", "float64": "<f8"}


def _read_ply(path: Path) -> Mesh:
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise MeshFileError(f"{path}: not a .ply file")
    header = data[:end].decode("ascii", "replace").splitlines()
    fmt = next((ln.split()[1] for ln in header if ln.startswith("format")), "")
    elements: list[tuple[str, int, list]] = []
    for ln in header:
        parts = ln.split()
        if parts[:1] == ["element"]:
            elements.append((parts[1], int(parts[2]), []))
        elif parts[:1] == ["property"] and elements:
            elements[-1][2].append(parts[1:])
    body = data[end + len(b"end_header\n"):]
    out: dict = {}
    if fmt == "ascii":
        tokens = iter(body.split())
        for name, count, props in elements:
            rows = []
            for _ in range(count):
                row = []
                for p in props:
                    if p[0] == "list":
                        row.append([float(next(tokens)) for _ in range(int(next(tokens)))])
                    else:
                        row.append(float(next(tokens)))
                rows.append(row)
            out[name] = (props, rows)
    elif fmt == "binary_little_endian":
        offset = 0
        for name, count, props in elements:
            if any(p[0] == "list" for p in props):  # faces: assume one list, fixed triangles (what we write)
                (count_t, index_t), = [(p[1], p[2]) for p in props if p[0] == "list"]
                rec = np.dtype([("n", _PLY_TYPES[count_t]), ("i", _PLY_TYPES[index_t], 3)])
                arr = np.frombuffer(body, rec, count, offset)
                if count and (arr["n"] != 3).any():
                    raise MeshFileError(f"{path}: binary .ply faces must be triangles")
                out[name] = (props, arr["i"].astype(np.int64))
            else:
                rec = np.dtype([(p[1], _PLY_TYPES[p[0]]) for p in props])
                arr = np.frombuffer(body, rec, count, offset)
                out[name] = (props, arr)
            offset += rec.itemsize * count
    else:
        raise MeshFileError(f"{path}: unsupported .ply format {fmt!r}")
    if "vertex" not in out or "face" not in out:
        raise MeshFileError(f"{path}: a mesh .ply needs vertex and face elements")
    vprops, vdata = out["vertex"]
    names = [p[-1] for p in vprops]
    if fmt == "ascii":
        vdata = np.asarray(vdata, dtype=np.float64)
        col = lambda n: vdata[:, names.index(n)]  # noqa: E731
        tris = [f[0] for f in out["face"][1]]
        faces = _fan([list(map(int, t)) for t in tris])
    else:
        col = lambda n: vdata[n].astype(np.float64)  # noqa: E731
        faces = out["face"][1]
    vertices = np.stack([col("x"), col("y"), col("z")], 1)
    colors = None
    if all(n in names for n in ("red", "green", "blue")):
        colors = torch.from_numpy(np.stack([col("red"), col("green"), col("blue")], 1) / 255.0).float()
    return Mesh(torch.from_numpy(vertices).float(), torch.as_tensor(np.asarray(faces), dtype=torch.int64).reshape(-1, 3),
                colors)


def _fan(polygons: list[list[int]]) -> list[list[int]]:
    return [[p[0], p[i], p[i + 1]] for p in polygons for i in range(1, len(p) - 1)]


def _obj_texture(obj: Path, mtllibs: list[str]) -> torch.Tensor | None:
    """The first map_Kd image of the OBJ's material libraries, [H, W, 3] float in [0, 1]."""
    from PIL import Image

    for lib in mtllibs:
        mtl = obj.parent / lib
        if not mtl.is_file():
            continue
        for line in mtl.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2 and parts[0] == "map_Kd":
                image = obj.parent / shlex.split(parts[1])[-1]
                if not image.is_file():
                    raise MeshFileError(f"{mtl}: texture {image} does not exist")
                rgb = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / 255.0
                return torch.from_numpy(rgb)
    return None


def _read_obj(path: Path) -> Mesh:
    verts, colors, uvs, faces, face_uvs, mtllibs = [], [], [], [], [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([float(x) for x in parts[1:4]])
            if len(parts) >= 7:
                colors.append([float(x) for x in parts[4:7]])
        elif parts[0] == "vt":
            uvs.append([float(x) for x in parts[1:3]])
        elif parts[0] == "f":
            corners = [c.split("/") for c in parts[1:]]
            idx = [int(c[0]) for c in corners]
            tex = [int(c[1]) if len(c) > 1 and c[1] else 0 for c in corners]
            for tri_v, tri_t in zip(_fan([idx]), _fan([tex])):
                faces.append(tri_v)
                face_uvs.append(tri_t)
        elif parts[0] == "mtllib":
            mtllibs.append(line.split(maxsplit=1)[1].strip())
    if not verts or not faces:
        raise MeshFileError(f"{path}: no vertices or faces")
    n = len(verts)
    f = torch.tensor(faces, dtype=torch.int64)
    f = torch.where(f < 0, f + n, f - 1)  # OBJ: 1-based, negative = relative to the end
    vertex_colors = torch.tensor(colors, dtype=torch.float32) if len(colors) == n else None
    texture = _obj_texture(path, mtllibs) if uvs else None
    uv = None
    if texture is not None:
        t = torch.tensor(face_uvs, dtype=torch.int64)
        if (t == 0).any():
            raise MeshFileError(f"{path}: a textured OBJ needs a vt index on every face corner")
        t = torch.where(t < 0, t + len(uvs), t - 1)
        uv = torch.tensor(uvs, dtype=torch.float32)[t]  # [F, 3, 2]
    return Mesh(torch.tensor(verts, dtype=torch.float32), f, vertex_colors, uv, texture)


def read_mesh(path: str | Path) -> Mesh:
    """A .ply or .obj mesh (see the module docstring); MeshFileError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise MeshFileError(f"{path}: no such mesh file")
    try:
        if path.suffix.lower() == ".ply":
            return _read_ply(path)
        if path.suffix.lower() == ".obj":
            return _read_obj(path)
    except (ValueError, IndexError, KeyError, StopIteration) as e:
        raise MeshFileError(f"{path}: unreadable mesh ({type(e).__name__}: {e})") from None
    raise MeshFileError(f"{path}: unknown mesh format (use .ply or .obj)")
