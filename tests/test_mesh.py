"""The mesh path: Gaussians -> mesh (density grid, marching cubes, vertex colours), .ply/.obj,
T3Bench's mesh renderer on the CPU (projection, depth, texture), and scoring a run on its mesh."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from generators.gaussians.model import Gaussians
from generators.mesh.extract import MeshExportConfig, extract_mesh
from generators.mesh.io import MeshFileError, read_mesh, write_obj, write_ply
from generators.mesh.mesh import Mesh
from metrics.cameras import cameras_at_points
from metrics.mesh_render import rasterize, render_mesh
from metrics.normalize import normalize_mesh

RED, BLUE = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])


def _shell(n: int = 1500, radius: float = 0.8, seed: int = 0) -> Gaussians:
    """Gaussians on a sphere: red above z = 0, blue below."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    d = d / d.norm(dim=1, keepdim=True) * radius
    colors = torch.where(d[:, 2:3] > 0, RED, BLUE)
    return Gaussians.from_points(d, colors, torch.full((n,), 0.08), 0.9)


@pytest.fixture(scope="module")
def shell_mesh() -> Mesh:
    return extract_mesh(_shell(), MeshExportConfig(resolution=40, threshold=1.0))


def test_extracted_mesh_follows_the_gaussians_and_their_colours(shell_mesh):
    r = shell_mesh.vertices.norm(dim=1)
    assert 0.55 < float(r.min()) and float(r.max()) < 1.05  # a shell around radius 0.8
    top = shell_mesh.vertex_colors[shell_mesh.vertices[:, 2] > 0.4].mean(0)
    bottom = shell_mesh.vertex_colors[shell_mesh.vertices[:, 2] < -0.4].mean(0)
    assert torch.allclose(top, RED, atol=0.02) and torch.allclose(bottom, BLUE, atol=0.02)
    assert len(shell_mesh.faces) > 1000


def test_no_surface_is_a_clear_error():
    from generators.errors import UserError

    with pytest.raises(UserError, match="threshold"):
        extract_mesh(_shell(n=50), MeshExportConfig(resolution=16, threshold=1e6))


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_mesh_files_round_trip(shell_mesh, tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    (write_ply if suffix == ".ply" else write_obj)(path, shell_mesh)
    back = read_mesh(path)
    assert torch.equal(back.faces, shell_mesh.faces)
    np.testing.assert_allclose(back.vertices.numpy(), shell_mesh.vertices.numpy(), atol=1e-5)
    # colours are stored as 8-bit values
    np.testing.assert_allclose(back.vertex_colors.numpy(), shell_mesh.vertex_colors.numpy(), atol=0.5 / 255 + 1e-4)


def test_unreadable_mesh_files(tmp_path):
    (tmp_path / "x.ply").write_text("not a ply")
    with pytest.raises(MeshFileError):
        read_mesh(tmp_path / "x.ply")
    with pytest.raises(MeshFileError, match="no such"):
        read_mesh(tmp_path / "missing.obj")


def test_normalize_mesh_is_t3benchs():
    v = torch.tensor([[0.0, 0, 0], [4, 0, 0], [0, 2, 0], [0, 0, 2]])
    mesh, frame = normalize_mesh(Mesh(v, torch.tensor([[0, 1, 2], [0, 2, 3]])))
    assert frame["center"] == [1.0, 0.5, 0.5] and frame["scale"] == 3.0  # vertex mean; max |x - mean|
    np.testing.assert_allclose(mesh.vertices.numpy(), ((v - torch.tensor([1.0, 0.5, 0.5])) / 3).numpy())


def _camera(position, fov_deg=60.0, size=64):
    return cameras_at_points(torch.tensor([position], dtype=torch.float64), torch.tensor([fov_deg], dtype=torch.float64),
                             size, size, 0.99)


def _quad(x: float, half: float, color, with_texture: bool = False) -> Mesh:
    """A square in the plane x = const, facing +x, corners (x, +-half, +-half)."""
    v = torch.tensor([[x, -half, -half], [x, half, -half], [x, half, half], [x, -half, half]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return Mesh(v, faces, torch.tensor(color).expand(4, 3).clone())


def test_projection_matches_the_perspective_formula():
    # a square of half-size h at distance D fills |ndc| < h / D * f, f = 1 / tan(fov / 2)
    size, fov, dist, half = 64, 60.0, 2.2, 0.5
    face_id, _ = rasterize(_quad(0.0, half, [1.0, 1.0, 1.0]), _camera([dist, 0, 0]).c2w[0], math.radians(fov),
                           size, size)
    f = 1 / math.tan(math.radians(fov) / 2)
    edge = half / dist * f  # ndc half-width
    centres = (np.arange(size) + 0.5) / size * 2 - 1
    expected = int((np.abs(centres) < edge).sum()) ** 2
    assert int((face_id >= 0).sum()) == expected


def test_nearest_face_wins_whatever_the_order():
    near, far = _quad(0.3, 0.5, [1.0, 0.0, 0.0]), _quad(-0.3, 0.5, [0.0, 0.0, 1.0])
    for a, b in ((near, far), (far, near)):
        both = Mesh(torch.cat([a.vertices, b.vertices]), torch.cat([a.faces, b.faces + 4]),
                    torch.cat([a.vertex_colors, b.vertex_colors]))
        img = render_mesh(both, _camera([2.2, 0, 0]), 0, (0.0, 0.0, 0.0))
        assert torch.allclose(img[32, 32], RED) and torch.equal(img[0, 0], torch.zeros(3))  # black background


def test_textured_obj_is_drawn_with_its_texture(tmp_path):
    # a T3Bench-style export: model.obj + model.mtl + texture_kd.png, left half green, right half yellow
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:, :4] = (0, 255, 0)
    tex[:, 4:] = (255, 255, 0)
    Image.fromarray(tex).save(tmp_path / "texture_kd.png")
    (tmp_path / "model.mtl").write_text("newmtl m\nmap_Kd texture_kd.png\n")
    (tmp_path / "model.obj").write_text(
        "mtllib model.mtl\nv 0 -0.5 -0.5\nv 0 0.5 -0.5\nv 0 0.5 0.5\nv 0 -0.5 0.5\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl m\nf 1/1 2/2 3/3 4/4\n")
    mesh = read_mesh(tmp_path / "model.obj")
    assert mesh.texture is not None and mesh.uv.shape == (2, 3, 2)
    img = render_mesh(mesh, _camera([2.2, 0, 0]), 0, (0.0, 0.0, 0.0))
    # seen from +x, world +y is image left (the camera's right is -y... as T3Bench's look-at: right = up x back)
    left, right = img[32, 22], img[32, 42]
    assert {tuple(left.round().tolist()), tuple(right.round().tolist())} == {(0.0, 1.0, 0.0), (1.0, 1.0, 0.0)}


def _finished_run(folder):
    from generators.gaussians.ply import save_ply

    folder.mkdir(parents=True)
    save_ply(_shell(n=800), folder / "gaussians.ply")
    (folder / "status.json").write_text(json.dumps({"state": "done", "prompt": "a red and blue ball", "method": "sds",
                                                    "seed": 0, "models": "tiny"}))
    return folder


def test_a_run_scored_on_its_mesh(tmp_path, monkeypatch):
    from metrics.config import deep_merge, eval_config_from_dict
    from metrics.evaluate import evaluate_run
    from metrics.models import eval_defaults, load_metric_models

    run = _finished_run(tmp_path / "run")
    small = {"quality": {"icosphere_subdivisions": 0, "fov_y_deg": [60.0, 36.0], "width": 16, "height": 16},
             "clip": {"num_views": 4, "width": 16, "height": 16}, "mesh": {"resolution": 24}, "source": "mesh"}
    cfg = eval_config_from_dict(deep_merge(deep_merge(eval_defaults("tiny"), {"models": "tiny"}), small))
    models = load_metric_models("tiny", ("quality", "clip"), "cpu")
    record = evaluate_run(run, cfg, models, stages=("quality", "clip"))
    assert not (run / "metrics.json").exists()  # the Gaussian path's scores are untouched
    on_disk = json.loads((run / "metrics_mesh.json").read_text())
    assert on_disk["source"] == "mesh" and on_disk["quality"]["settings"]["source"] == "mesh"
    assert on_disk["quality"]["settings"]["mesh"]["resolution"] == 24 and on_disk["mesh"]["faces"] > 0
    assert on_disk["quality"]["num_views"] == 24 and isinstance(on_disk["clip"]["score"], float)
    assert (run / "mesh.ply").is_file() and (run / "mesh.obj").is_file()
    # the kept mesh is reused: no second export
    import generators.mesh.export as export

    monkeypatch.setattr(export, "extract_mesh", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-exported")))
    again = evaluate_run(run, cfg, models, stages=("quality", "clip"), force=True)
    assert again["quality"]["score"] == pytest.approx(record["quality"]["score"])


def test_a_mesh_file_is_scored_from_the_command_line(tmp_path, shell_mesh, capsys):
    from metrics.__main__ import main

    path = write_obj(tmp_path / "model.obj", shell_mesh)
    code = main(["mesh", str(path), "--prompt", "a red and blue ball", "--models", "tiny", "--stages", "quality",
                 "--set", "quality.icosphere_subdivisions=0", "--set", "quality.width=16", "--set", "quality.height=16",
                 "--set", "quality.fov_y_deg=[60.0]"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and isinstance(line["quality"], float)
    kept = json.loads((tmp_path / "model.obj.eval" / "metrics_mesh.json").read_text())
    assert kept["quality"]["num_views"] == 12 and kept["normalization"]["scale"] > 0


def test_report_shows_both_ways_of_scoring_a_job(tmp_path):
    from harness.plan import RunSpec
    from harness.report import build_report

    results = tmp_path / "results"
    specs = []
    for cat in ("single", "surr", "multi"):
        spec = RunSpec("sds", "sds", cat, 0, f"a {cat} thing", 0, "sd15", {}, f"{cat}-0-sds")
        d = spec.run_dir(results)
        d.mkdir(parents=True)
        (d / "status.json").write_text(json.dumps({"state": "done", "prompt": spec.prompt, "method": "sds", "seed": 0}))
        for name, q in (("metrics.json", 40.0), ("metrics_mesh.json", 30.0)):
            (d / name).write_text(json.dumps({"quality": {"status": "done", "score": q, "model_set": "t3bench"},
                                              "alignment": {"status": "done", "score": 50.0, "rating": 3,
                                                            "judge": {"name": "j"}, "captioner": {"id": "c"}},
                                              "clip": {"status": "done", "score": 0.3}}))
        specs.append(spec)
    text = build_report("both", specs, results)["report"].read_text()
    titles = [ln for ln in text.splitlines() if ln.startswith("## T3Bench quality only")]
    assert len(titles) == 2 and "Gaussians rendered directly" in titles[0] and "exported meshes" in titles[1]
    for title, q in zip(titles, (40.0, 30.0)):
        line = next(ln for ln in text.split(title)[1].splitlines() if ln.startswith("| **sds**"))
        assert f"{q:.1f} (n=3/3)" in line


def test_rasterising_in_chunks_changes_nothing(shell_mesh, monkeypatch):
    import metrics.mesh_render as mr

    mesh, _ = normalize_mesh(shell_mesh)
    cams = _camera([1.5, 1.2, 1.0], fov_deg=45.0, size=48)
    whole = rasterize(mesh, cams.c2w[0], math.radians(45.0), 48, 48)
    monkeypatch.setattr(mr, "PAIR_CHUNK", 97)  # many small chunks, boundaries inside faces' pixel lists
    parts = rasterize(mesh, cams.c2w[0], math.radians(45.0), 48, 48)
    assert (whole[0] >= 0).sum() > 100
    assert torch.equal(whole[0], parts[0]) and torch.allclose(whole[1], parts[1])
