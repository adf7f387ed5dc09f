"""3D Gaussians as the standard 3DGS .ply (Inria layout), readable by SuperSplat, antimatter15's
splat viewer and SIBR.

Layout: `binary_little_endian 1.0`, one `vertex` element, float32 properties in this order:
    x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3
Values are stored raw, as trained: opacity as a logit, scales as logs, rot as a wxyz quaternion.
f_rest is channel-major (Inria transposes [N, K-1, 3] to [N, 3, K-1] before flattening): all SH
bases of red, then of green, then of blue. Normals are written as zeros (viewers ignore them).
The header carries one comment line, `comment up_axis +z ...`: our world frame is z up with the
front (azimuth 0) on +x (generators/cameras.py); Inria/COLMAP scenes are usually y down, so a
viewer needs this to stand the object upright.

The reader looks properties up by name, so files that order them differently or carry extra
properties (e.g. other tools' exports) load too.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from generators.errors import UserError
from generators.gaussians.model import Gaussians
from generators.io import atomic_write


UP_AXIS_COMMENT = "comment up_axis +z front +x (anchords-bench world frame: z up, azimuth 0 on +x)"


class PlyError(UserError):
    """A .ply file that is not a readable 3D Gaussian splat."""


# PLY scalar type names -> numpy little-endian dtypes
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2", "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
}


def ply_property_names(sh_degree: int) -> list[str]:
    """Vertex property names in the standard order for SH degree `sh_degree`."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)]
            + [f"f_rest_{i}" for i in range(n_rest)] + ["opacity"]
            + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])


def _pack(gaussians: Gaussians) -> np.ndarray:
    """[N, P] float32 rows in the order of `ply_property_names`."""
    p = {k: v.detach().cpu().float() for k, v in gaussians.params.items()}
    n = len(gaussians)
    columns = [
        p["means"],  # [N, 3]
        torch.zeros(n, 3),  # normals
        p["sh0"].reshape(n, 3),  # [N, 1, 3] -> [N, 3]
        p["shN"].transpose(1, 2).reshape(n, -1),  # [N, K-1, 3] -> channel-major [N, 3(K-1)]
        p["opacities"][:, None],
        p["scales"],
        p["quats"],
    ]
    return torch.cat(columns, dim=1).numpy().astype("<f4", copy=False)


def save_ply(gaussians: Gaussians, path: str | os.PathLike) -> Path:
    """Write `gaussians` to `path` atomically; returns the path."""
    names = ply_property_names(gaussians.sh_degree)
    rows = _pack(gaussians)
    assert rows.shape[1] == len(names)
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0", UP_AXIS_COMMENT, f"element vertex {rows.shape[0]}"]
        + [f"property float {name}" for name in names] + ["end_header"]) + "\n"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(np.ascontiguousarray(rows).tobytes())

    return atomic_write(path, write)


def _read_header(f, path: Path) -> tuple[int, list[tuple[str, str]]]:
    """-> (vertex count, [(property name, numpy dtype)]) of the vertex element; f is left at the
    first byte of binary data."""
    if f.readline().strip() != b"ply":
        raise PlyError(f"{path}: not a PLY file (missing 'ply' magic line)")
    count = None
    props: list[tuple[str, str]] = []
    element = None
    fmt = None
    while True:
        line = f.readline()
        if not line:
            raise PlyError(f"{path}: PLY header has no 'end_header' line")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            fmt = words[1] if len(words) > 1 else ""
        elif words[0] == "element":
            if len(words) != 3:
                raise PlyError(f"{path}: bad header line {line!r}")
            element = words[1]
            if element == "vertex":
                if count is not None:
                    raise PlyError(f"{path}: two 'vertex' elements")
                count = int(words[2])
                if count < 0:
                    raise PlyError(f"{path}: negative vertex count {count}")
            elif count is None:
                raise PlyError(f"{path}: element '{element}' before 'vertex' is not supported")
        elif words[0] == "property" and element == "vertex":
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise PlyError(f"{path}: unsupported vertex property line {line!r}")
            props.append((words[2], _PLY_TYPES[words[1]]))
    if fmt != "binary_little_endian":
        raise PlyError(f"{path}: format {fmt!r} is not supported (need binary_little_endian)")
    if count is None:
        raise PlyError(f"{path}: no 'vertex' element")
    return count, props


def load_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS .ply written by `save_ply` (or by Inria-style tools) into `Gaussians`.

    The SH degree is inferred from the number of f_rest_* properties (3 (K - 1), K a square).
    Raises PlyError (a UserError, naming the file) for anything malformed.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            count, props = _read_header(f, path)
            data = f.read()
    except OSError as e:
        raise PlyError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:  # int() of a bad element count
        raise PlyError(f"{path}: malformed PLY header ({e})") from None

    names = [name for name, _ in props]
    if len(set(names)) != len(names):
        raise PlyError(f"{path}: duplicate vertex property names")
    dtype = np.dtype([(name, dt) for name, dt in props])
    need = count * dtype.itemsize
    if len(data) < need:
        raise PlyError(f"{path}: truncated: {count} vertices need {need} bytes of data, "
                       f"found {len(data)}")
    rows = np.frombuffer(data, dtype=dtype, count=count)

    n_rest = sum(1 for name in names if name.startswith("f_rest_"))
    k = n_rest // 3 + 1
    sh_degree = math.isqrt(k) - 1
    if n_rest % 3 or (sh_degree + 1) ** 2 != k:
        raise PlyError(f"{path}: {n_rest} f_rest properties is not 3 * ((d + 1)^2 - 1) for any "
                       f"SH degree d")
    required = (["x", "y", "z"] + [f"f_dc_{i}" for i in range(3)]
                + [f"f_rest_{i}" for i in range(n_rest)] + ["opacity"]
                + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    missing = [name for name in required if name not in dtype.names]
    if missing:
        raise PlyError(f"{path}: missing vertex properties: {', '.join(missing)}")

    def cols(*keys: str) -> torch.Tensor:  # [N, len(keys)] float32
        return torch.from_numpy(np.stack([rows[key].astype(np.float32) for key in keys], axis=1))

    n = count
    rest = (cols(*[f"f_rest_{i}" for i in range(n_rest)]) if n_rest
            else torch.zeros(n, 0))  # [N, 3(K-1)] channel-major
    return Gaussians(
        means=cols("x", "y", "z"),
        scales=cols("scale_0", "scale_1", "scale_2"),
        quats=cols("rot_0", "rot_1", "rot_2", "rot_3"),
        opacities=cols("opacity")[:, 0],
        sh0=cols("f_dc_0", "f_dc_1", "f_dc_2").reshape(n, 1, 3),
        shN=rest.reshape(n, 3, k - 1).transpose(1, 2),
        sh_degree=sh_degree,
    )
