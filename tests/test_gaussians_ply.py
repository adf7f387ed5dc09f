"""Standard 3DGS .ply export and import."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generators.errors import UserError
from generators.gaussians.model import Gaussians
from generators.gaussians.ply import UP_AXIS_COMMENT, PlyError, load_ply, save_ply


def _random_gaussians(n: int, sh_degree: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    return Gaussians(
        means=torch.randn(n, 3, generator=g), scales=torch.randn(n, 3, generator=g) - 4,
        quats=torch.randn(n, 4, generator=g), opacities=torch.randn(n, generator=g),
        sh0=torch.randn(n, 1, 3, generator=g), shN=torch.randn(n, k - 1, 3, generator=g),
        sh_degree=sh_degree)


def _header(path) -> list[str]:
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].decode("ascii").splitlines()


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_roundtrip_is_exact(tmp_path, sh_degree):
    gs = _random_gaussians(57, sh_degree)
    path = save_ply(gs, tmp_path / "g.ply")
    back = load_ply(path)
    assert back.sh_degree == sh_degree and len(back) == 57
    for name in Gaussians.param_names:
        assert torch.equal(back.params[name], gs.params[name]), name
    # no temporary files left beside the target (atomic write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.ply"]


def test_header_lists_standard_properties_in_order(tmp_path):
    path = save_ply(_random_gaussians(5, 1), tmp_path / "g.ply")
    lines = _header(path)
    # the comment says which axis is up (viewers of y-down Inria scenes need it)
    assert lines[:4] == ["ply", "format binary_little_endian 1.0", UP_AXIS_COMMENT, "element vertex 5"]
    assert lines[2].startswith("comment up_axis +z")
    assert lines[-1] == "end_header"
    expected = ("x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 f_rest_1 f_rest_2 f_rest_3 f_rest_4 "
                "f_rest_5 f_rest_6 f_rest_7 f_rest_8 opacity scale_0 scale_1 scale_2 rot_0 rot_1 "
                "rot_2 rot_3").split()
    assert lines[4:-1] == [f"property float {name}" for name in expected]
    header_bytes = len("\n".join(lines)) + 1
    assert path.stat().st_size == header_bytes + 5 * len(expected) * 4


def test_f_rest_is_channel_major_and_values_are_raw(tmp_path):
    gs = _random_gaussians(3, 1)
    with torch.no_grad():
        for b in range(3):  # SH basis (excluding DC)
            for c in range(3):  # colour channel
                gs.params["shN"][:, b, c] = 100 * c + b
    path = save_ply(gs, tmp_path / "g.ply")
    data = path.read_bytes()
    body = data[data.index(b"end_header\n") + len(b"end_header\n"):]
    rows = np.frombuffer(body, dtype="<f4").reshape(3, -1)  # [N, 26]
    f_rest = rows[:, 9:18]
    # Inria: all bases of channel 0, then channel 1, then channel 2
    assert f_rest[0].tolist() == [0, 1, 2, 100, 101, 102, 200, 201, 202]
    # opacity is the logit, scales the logs, rot the raw wxyz quaternion; normals are zero
    p = {k: v.detach().numpy() for k, v in gs.params.items()}
    np.testing.assert_array_equal(rows[:, 0:3], p["means"])
    np.testing.assert_array_equal(rows[:, 3:6], 0)
    np.testing.assert_array_equal(rows[:, 18], p["opacities"])
    np.testing.assert_array_equal(rows[:, 19:22], p["scales"])
    np.testing.assert_array_equal(rows[:, 22:26], p["quats"])


def test_truncated_file_gives_clear_error(tmp_path):
    path = save_ply(_random_gaussians(10, 0), tmp_path / "cut.ply")
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(PlyError, match=r"cut\.ply.*truncated") as info:
        load_ply(path)
    assert isinstance(info.value, UserError)


def test_malformed_files(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"hello\n")
    with pytest.raises(PlyError, match="bad.ply.*not a PLY"):
        load_ply(bad)
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(PlyError, match="binary_little_endian"):
        load_ply(bad)
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n")
    with pytest.raises(PlyError, match="end_header"):
        load_ply(bad)
    # 4 f_rest values is not 3 * ((d + 1)^2 - 1) for any d
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(4)]
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 1\n" + "".join(
        f"property float {n}\n" for n in names) + "end_header\n"
    bad.write_bytes(header.encode() + np.zeros(len(names), "<f4").tobytes())
    with pytest.raises(PlyError, match="f_rest"):
        load_ply(bad)
    with pytest.raises(PlyError, match="missing.ply"):
        load_ply(tmp_path / "missing.ply")


def test_load_reads_properties_by_name(tmp_path):
    """Another tool's export: properties reordered, an extra uchar property, no normals."""
    gs = _random_gaussians(4, 0)
    p = {k: v.detach().numpy() for k, v in gs.params.items()}
    cols = {"rot_0": p["quats"][:, 0], "rot_1": p["quats"][:, 1], "rot_2": p["quats"][:, 2],
            "rot_3": p["quats"][:, 3], "x": p["means"][:, 0], "y": p["means"][:, 1],
            "z": p["means"][:, 2], "opacity": p["opacities"], "f_dc_0": p["sh0"][:, 0, 0],
            "f_dc_1": p["sh0"][:, 0, 1], "f_dc_2": p["sh0"][:, 0, 2], "scale_0": p["scales"][:, 0],
            "scale_1": p["scales"][:, 1], "scale_2": p["scales"][:, 2]}
    dtype = np.dtype([(k, "<f4") for k in cols] + [("red", "u1")])
    rows = np.zeros(4, dtype=dtype)
    for k, v in cols.items():
        rows[k] = v
    header = ("ply\nformat binary_little_endian 1.0\ncomment from elsewhere\nelement vertex 4\n"
              + "".join(f"property float {k}\n" for k in cols) + "property uchar red\nend_header\n")
    path = tmp_path / "other.ply"
    path.write_bytes(header.encode() + rows.tobytes())
    back = load_ply(path)
    for name in Gaussians.param_names:
        assert torch.equal(back.params[name], gs.params[name]), name
