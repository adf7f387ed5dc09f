"""The ControlNet anchor's "detector" control map: normals estimated from the RGB render alone
(a DPT relative-depth network + controlnet_aux's MiDaS normal recipe), the model-set component
that provides the network, and the errors when it is missing."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from generators.cameras import make_cameras
from generators.config import CameraConfig, GuidanceConfig, config_from_dict
from generators.errors import MissingWeightsError, UserError
from generators.guidance.control_maps import normal_map_from_depth, normals_from_relative_depth, sobel
from generators.guidance.denoiser import BranchInputs, UNetDenoiser
from generators.guidance.sources import ControlNetSource, StepContext
from generators.models import weights
from generators.models.loader import load_models
from generators.models.spec import load_set_spec
from generators.models.tiny import ensure_tiny_set
from generators.render.types import RenderOutput
from generators.train import required_components

B, S = 3, 64
Z = 2 * math.pi  # controlnet_aux's `a`
DET_REV = "0011223344556677889900112233445566778899"


# ----------------------------------------------------------------------------------------------
# The normal-from-depth recipe on synthetic disparities (expectations derived by hand)


def encoded(n):
    """(x right, y up, z to the viewer) unit normal -> the NormalBAE ControlNets' colours, by hand:
    red is left, green is top, blue is front."""
    x, y, z = n
    return [(1 - x) / 2, (1 + y) / 2, (1 + z) / 2]


def test_sobel_is_opencv_ksize3_with_reflect101_border():
    u = torch.arange(8.0)
    d = (u**2)[None, None, :].expand(1, 5, 8).clone()  # varies along columns only
    gx, gy = sobel(d)
    # interior: (1 + 2 + 1) * (d(u+1) - d(u-1)) = 4 * 4u = 16u
    torch.testing.assert_close(gx[0, :, 1:-1], (16 * u[1:-1]).expand(5, 6))
    # border columns reflect without repeating the edge: d(-1) = d(1), d(8) = d(6)
    assert torch.all(gx[0, :, 0] == 0) and torch.all(gx[0, :, -1] == 0)
    assert torch.all(gy == 0)


def test_plane_tilted_in_x_gives_a_constant_normal_facing_the_near_side():
    k = 0.5  # disparity grows to the right: the right side is nearer
    u = torch.arange(32.0)
    disparity = (10.0 + k * u)[None, None, :].expand(1, 24, 32).clone()
    img = normals_from_relative_depth(disparity, bg_threshold=0.0, normal_z=Z)  # [1, 3, 24, 32]
    assert img.shape == (1, 3, 24, 32)
    # interior Sobel gx = 4 * 2k = 8k, gy = 0; x flipped (the surface turns to the left)
    norm = math.sqrt((8 * k) ** 2 + Z**2)
    expected = torch.tensor(encoded((-8 * k / norm, 0.0, Z / norm)))
    interior = img[0, :, :, 1:-1].permute(1, 2, 0)  # [24, 30, 3]
    torch.testing.assert_close(interior, expected.expand_as(interior))
    assert float(expected[0]) > 0.5  # facing left: red

    # the same plane tilted in y (nearer toward the bottom row): facing up, green above 0.5
    v = torch.arange(24.0)
    disparity_y = (10.0 + k * v)[None, :, None].expand(1, 24, 32).clone()
    img_y = normals_from_relative_depth(disparity_y, bg_threshold=0.0, normal_z=Z)
    torch.testing.assert_close(img_y[0, :, 1:-1, :].permute(1, 2, 0),
                               torch.tensor(encoded((0.0, 8 * k / norm, Z / norm))).expand(22, 32, 3))


def test_detector_recipe_and_rendered_normals_share_one_convention():
    # a real plane z = z0 - s x (camera x right): its inverse depth is linear in the pixel column,
    # so the rendered-depth path and the detector recipe see the same surface
    cams = make_cameras(torch.zeros(1), torch.zeros(1), torch.full((1,), 3.0), torch.full((1,), 50.0), 32, 32)
    fx, cx = float(cams.Ks[0, 0, 0]), float(cams.Ks[0, 0, 2])
    z0, s = 3.0, 0.8
    u = torch.arange(32.0) + 0.5
    disparity = ((1 + s * (u - cx) / fx) / z0)[None, None, :].expand(1, 32, 32).clone()
    depth = (1 / disparity)[..., None]  # [1, 32, 32, 1]
    exact = normal_map_from_depth(depth, torch.ones_like(depth), cams)[0, :, 16, 16]
    # plane normal toward the camera, x right / y up / z to the viewer: (-s, 0, 1) / |.|
    n = math.sqrt(1 + s * s)
    torch.testing.assert_close(exact, torch.tensor(encoded((-s / n, 0.0, 1 / n))), atol=1e-4, rtol=0)
    estimated = normals_from_relative_depth(disparity, 0.0, Z)[0, :, 16, 16]
    assert estimated[0] > 0.5 and exact[0] > 0.5  # both face left: red
    assert abs(float(estimated[1]) - 0.5) < 1e-6 and estimated[2] > 0.5


def test_background_below_the_threshold_is_flat():
    k, width = 1.0, 32
    u = torch.arange(float(width))
    disparity = (k * u)[None, None, :].expand(2, 8, width).clone()
    img = normals_from_relative_depth(disparity, bg_threshold=0.1, normal_z=Z)[0]  # [3, 8, 32]
    # normalised disparity u / 31 < 0.1 for columns 0..3: flat background, facing the viewer
    flat = torch.tensor([0.5, 0.5, 1.0])
    for col in range(4):
        torch.testing.assert_close(img[:, :, col].T, flat.expand(8, 3))
    norm = math.sqrt((8 * k) ** 2 + Z**2)
    tilted = torch.tensor(encoded((-8 * k / norm, 0.0, Z / norm)))
    for col in (4, 15, width - 2):
        torch.testing.assert_close(img[:, :, col].T, tilted.expand(8, 3))
    # the last column sees d(u+1) = d(u-1) (reflected border): no gradient, flat as well
    torch.testing.assert_close(img[:, :, -1].T, flat.expand(8, 3))
    # a higher threshold masks more columns
    more = normals_from_relative_depth(disparity, bg_threshold=0.5, normal_z=Z)[0]
    torch.testing.assert_close(more[:, :, 15].T, flat.expand(8, 3))
    torch.testing.assert_close(more[:, :, 16].T, tilted.expand(8, 3))


# ----------------------------------------------------------------------------------------------
# A sphere: the colours the NormalBAE ControlNets were trained on ("blue is front, red is left,
# green is top", ControlNet 1.1), the background the flat normal facing the viewer


SPHERE_SIZE, SPHERE_RADIUS, SPHERE_DISTANCE = 65, 1.0, 3.0  # odd: one pixel at the centre


def sphere_depth():
    """Analytic depth [1, H, W, 1] (camera z), alpha and cameras of a unit sphere at the origin seen
    from +x, and its exact normals [H, W, 3] in camera axes (x right, y up, z toward the viewer)."""
    cams = make_cameras(torch.zeros(1), torch.zeros(1), torch.full((1,), SPHERE_DISTANCE),
                        torch.full((1,), 50.0), SPHERE_SIZE, SPHERE_SIZE)
    K = cams.Ks[0]
    v, u = torch.meshgrid(torch.arange(SPHERE_SIZE) + 0.5, torch.arange(SPHERE_SIZE) + 0.5, indexing="ij")
    ray = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)  # OpenCV
    centre = torch.tensor([0.0, 0.0, SPHERE_DISTANCE])
    # |t ray - centre|^2 = r^2: the nearer root; its camera z is t (ray z = 1)
    a, b = (ray * ray).sum(-1), -2 * (ray @ centre)
    disc = b * b - 4 * a * (centre @ centre - SPHERE_RADIUS**2)
    hit = disc > 0
    t = torch.where(hit, (-b - disc.clamp_min(0).sqrt()) / (2 * a), torch.full_like(a, 100.0))
    normals = (t[..., None] * ray - centre) / SPHERE_RADIUS * torch.tensor([1.0, -1.0, -1.0])  # OpenCV -> up, viewer
    return t[None, ..., None], hit[None, ..., None].float(), cams, normals


def _probe_pixels(alpha):
    """(row, col) of the left, right, top and bottom probes: 80% of the way from the centre to the
    silhouette along the middle row and column (off the silhouette, where differences are clean)."""
    mask = alpha[0, ..., 0] > 0
    mid = SPHERE_SIZE // 2
    cols, rows = mask[mid].nonzero()[:, 0], mask[:, mid].nonzero()[:, 0]
    reach_x, reach_y = (int(cols[-1]) - int(cols[0])) * 0.4, (int(rows[-1]) - int(rows[0])) * 0.4
    return {"left": (mid, round(mid - reach_x)), "right": (mid, round(mid + reach_x)),
            "top": (round(mid - reach_y), mid), "bottom": (round(mid + reach_y), mid)}


def _assert_sphere_colours(img, alpha, normals=None):
    """img [3, H, W]: red left, green top, blue centre (and, given the exact normals [H, W, 3],
    their hand-encoded colours at the probes)."""
    px = lambda rc: img[:, rc[0], rc[1]]  # noqa: E731
    probes = {k: px(rc) for k, rc in _probe_pixels(alpha).items()}
    assert probes["left"][0] > 0.75 and probes["right"][0] < 0.25, probes  # red is left
    assert probes["top"][1] > 0.75 and probes["bottom"][1] < 0.25, probes  # green is top
    if normals is not None:
        for name, (r, c) in _probe_pixels(alpha).items():
            expected = torch.tensor(encoded(normals[r, c].tolist()))
            torch.testing.assert_close(probes[name], expected, atol=0.02, rtol=0, msg=name)
    for side in ("left", "right"):
        assert abs(float(probes[side][1]) - 0.5) < 0.05, probes
    for side in ("top", "bottom"):
        assert abs(float(probes[side][0]) - 0.5) < 0.05, probes
    centre = px((SPHERE_SIZE // 2, SPHERE_SIZE // 2))
    assert centre[2] > 0.98 and all(abs(float(c) - 0.5) < 0.05 for c in centre[:2])  # blue is front


def test_a_rendered_sphere_carries_the_normalbae_controlnet_colours():
    depth, alpha, cams, normals = sphere_depth()
    img = normal_map_from_depth(depth, alpha, cams)[0]  # [3, H, W]
    _assert_sphere_colours(img, alpha, normals)
    torch.testing.assert_close(img[:, 0, 0], torch.tensor([0.5, 0.5, 1.0]))  # background: flat, facing us
    background = alpha[0, ..., 0] == 0
    torch.testing.assert_close(img[:, background].T, torch.tensor([0.5, 0.5, 1.0]).expand(int(background.sum()), 3))


def test_the_detector_recipe_gives_a_sphere_the_same_colours():
    depth, alpha, _, _ = sphere_depth()
    # MiDaS-style relative inverse depth (near is large; DPT's come in the hundreds)
    disparity = torch.where(alpha[..., 0] > 0, 1000 / depth[..., 0], torch.zeros_like(depth[..., 0]))
    img = normals_from_relative_depth(disparity, bg_threshold=0.1, normal_z=Z)[0]
    _assert_sphere_colours(img, alpha)
    torch.testing.assert_close(img[:, 0, 0], torch.tensor([0.5, 0.5, 1.0]))  # background below bg_th: flat


# ----------------------------------------------------------------------------------------------
# The detector path on the tiny set


@pytest.fixture(scope="module")
def det_models():
    return load_models("tiny", {"base", "controlnet", "control_detector"}, "cpu")


def cameras(n=B):
    return make_cameras(torch.full((n,), 15.0), torch.linspace(0, 240, n), torch.full((n,), 3.0),
                        torch.full((n,), 50.0), S, S)


def smooth_images(seed, n=B):
    """[n, 3, S, S] smooth colour fields in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(S, S), mode="bilinear")


def render_of(images, depth_value=3.0):
    n = images.shape[0]
    rgb = images.permute(0, 2, 3, 1).contiguous()
    return RenderOutput(rgb, torch.ones(n, S, S, 1), torch.full((n, S, S, 1), depth_value),
                        torch.zeros(n, 1, 2), torch.zeros(n, 1, dtype=torch.int32))


def detector_config():
    c = GuidanceConfig()
    c.vae_input_size = S
    c.source.kind = "controlnet"
    c.source.controlnet.control_map = "detector"
    return c


def context(images, depth_value=3.0):
    return StepContext(0, cameras(images.shape[0]), images, render_of(images.detach(), depth_value))


def test_detector_map_is_a_normal_image_of_the_render_only(det_models):
    src = ControlNetSource(det_models, detector_config(), CameraConfig(), "a red apple")
    a = smooth_images(0).requires_grad_(True)  # the renders carry the graph during training
    map_a = src.control_image(context(a))
    assert map_a.shape == (B, 3, S, S) and not map_a.requires_grad
    assert map_a.min() >= 0 and map_a.max() <= 1
    # unit normals with z toward the viewer: 2 * img - 1 has norm 1 and a positive z
    n = map_a * 2 - 1
    torch.testing.assert_close(n.norm(dim=1), torch.ones(B, S, S), atol=1e-5, rtol=0)
    assert torch.all(n[:, 2] > 0)
    assert n[:, 0].std() > 0.05  # the tiny network's depth varies enough to tilt the normals

    # the map follows the RGB render, view by view, and never reads the rendered depth
    b = a.detach().clone()
    b[1] = smooth_images(1, 1)[0]
    map_b = src.control_image(context(b))
    assert torch.equal(map_a[0], map_b[0]) and torch.equal(map_a[2], map_b[2])
    assert (map_a[1] - map_b[1]).abs().mean() > 1e-2
    torch.testing.assert_close(src.control_image(context(a.detach(), depth_value=7.0)), map_a)


def test_detector_map_changes_the_source_prediction_only(det_models):
    src = ControlNetSource(det_models, detector_config(), CameraConfig(), "a red apple")
    den = UNetDenoiser(det_models.unet, det_models.controlnet)
    g = torch.Generator().manual_seed(3)
    z_t, t = torch.randn(B, 4, 8, 8, generator=g), torch.tensor([200, 500, 800])
    with torch.no_grad():
        ta, sa = den.predict(z_t, t, *src.branches(context(smooth_images(0))))
        tb, sb = den.predict(z_t, t, *src.branches(context(smooth_images(1))))
    assert torch.equal(ta, tb)  # the target branch sees no control
    assert not torch.allclose(sa, sb)


def test_loaded_detector_is_the_tiny_dpt_hybrid(det_models):
    from transformers import DPTForDepthEstimation

    det = det_models.control_detector
    assert isinstance(det, DPTForDepthEstimation) and det.config.is_hybrid  # Intel/dpt-hybrid-midas's family
    assert not any(p.requires_grad for p in det.parameters()) and not det.training
    size = det_models.control_detector_processor.size
    assert (size["height"], size["width"]) == (det.config.image_size,) * 2
    assert det_models.resolved["control_detector"]["revision"] == "local"


# ----------------------------------------------------------------------------------------------
# Which runs load it, and the errors without it


def test_only_the_detector_control_map_requires_the_component():
    cfg = config_from_dict({"guidance": {"source": {"kind": "controlnet", "controlnet": {"control_map": "detector"}}}})
    assert "control_detector" in required_components(cfg)
    cfg.guidance.source.controlnet.control_map = "normal"
    assert "control_detector" not in required_components(cfg)


def test_the_source_names_the_missing_component():
    models = load_models("tiny", {"base", "controlnet"}, "cpu")
    with pytest.raises(RuntimeError, match="control_detector"):
        ControlNetSource(models, detector_config(), CameraConfig(), "a red apple")


def test_a_set_without_the_component_is_a_user_error():
    with pytest.raises(UserError, match="has no 'control_detector' component"):
        load_models("toy", {"control_detector"}, "cpu")


def _set_with_hub_detector(tmp_path):
    """A set whose base is the tiny folder and whose detector is named by the real hub id."""
    spec = load_set_spec("sd15").control_detector
    tiny = ensure_tiny_set()
    path = tmp_path / "det_set.yaml"
    path.write_text(f"name: det\nbase: {{path: {tiny / 'base'}}}\n"
                    f"control_detector: {{id: {spec.id}, revision: {spec.revision}}}\n")
    return path, spec.id


def test_missing_detector_weights_name_the_repo_and_the_fetch_command(offline_home, tmp_path):
    path, repo_id = _set_with_hub_detector(tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        load_models(path, {"control_detector"}, "cpu")
    msg = str(info.value)
    assert repo_id in msg and "'control_detector'" in msg and "--components control_detector" in msg


def test_detector_loads_by_hub_id_from_the_cache(offline_home, tmp_path):
    path, repo_id = _set_with_hub_detector(tmp_path)
    repo = offline_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(DET_REV)
    shutil.copytree(ensure_tiny_set() / "control_detector", repo / "snapshots" / DET_REV)
    models = load_models(path, {"control_detector"}, "cpu")
    assert models.resolved["control_detector"]["revision"] == DET_REV
    assert models.control_detector.config.is_hybrid


def test_make_weights_fetches_the_detector_only_when_named():
    spec = load_set_spec("sd15")
    assert spec.control_detector.id == "Intel/dpt-hybrid-midas"
    assert load_set_spec("sd21").control_detector.id == "Intel/dpt-hybrid-midas"
    assert "control_detector" not in {f.component for f in weights.plan(spec)}
    (fetch,) = weights.plan(spec, {"control_detector"})
    assert (fetch.repo_id, fetch.revision) == ("Intel/dpt-hybrid-midas", "main")
    # an older transformers repo with pickled weights only: `pytorch_model.bin`
    repo = {"config.json": 1, "preprocessor_config.json": 1, "pytorch_model.bin": 9, "README.md": 1}
    assert weights.choose_files(fetch, repo) == ["config.json", "preprocessor_config.json", "pytorch_model.bin"]
    repo["model.safetensors"] = 9
    assert "model.safetensors" in weights.choose_files(fetch, repo)
    assert "pytorch_model.bin" not in weights.choose_files(fetch, repo)


def test_a_run_with_the_detector_map_loads_the_component_itself(tmp_path):
    from generators.methods import resolve_run_config
    from generators.train import run_generation

    overrides = {
        "steps": 2, "camera": {"batch_size": 2, "width": 32, "height": 32},
        "init": {"kind": "ball", "ball_points": 200, "ball_radius": 0.6},
        "views": {"width": 32, "height": 32, "turntable_frames": 2, "grid_views": 2},
        "guidance": {"source": {"controlnet": {"control_map": "detector"}}},
    }
    cfg = resolve_run_config("anchords-cn", prompt="a red apple", seed=0, models="tiny", overrides=overrides)
    status = run_generation(cfg, tmp_path, show_progress=False)  # loads exactly required_components
    assert status["state"] == "done"
    assert "control_detector" in status["models_resolved"]
