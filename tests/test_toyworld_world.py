"""ToyWorld: caption grammar, layout, signed distances, the sphere tracer and cached data sets."""

from __future__ import annotations

import math
import time

import pytest
import torch

from generators.cameras import make_cameras
from generators.toyworld.config import COLOURS, SHAPES, SceneSampling, ShapeGeometry, WorldConfig
from generators.toyworld.data import build_dataset, captions_of, render_chunk, render_specs
from generators.toyworld.sdf_render import SDFS, render_scenes
from generators.toyworld.world import (CaptionError, ObjectSpec, SceneSpec, all_specs, caption, layout, parse,
                                       sample_specs)

WORLD = WorldConfig()


def front_cameras(n: int, azimuth: float = 0.0, elevation: float = 0.0, size: int = 32):
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return make_cameras(full(elevation), full(azimuth), full(WORLD.views.distance), full(WORLD.views.fov_y_deg), size, size)


def render(captions: list[str], azimuth: float = 0.0, elevation: float = 0.0, size: int = 32):
    specs = [parse(c) for c in captions]
    batch = layout(specs, WORLD.layout, WORLD.geometry, None)
    return render_scenes(batch, front_cameras(len(specs), azimuth, elevation, size), WORLD)


# -- grammar ----------------------------------------------------------------------------------


def test_caption_grammar_round_trips_every_scene():
    specs = all_specs(1) + all_specs(2) + all_specs(2, "on") + all_specs(3)[::97]
    assert len(all_specs(1)) == 16 and len(all_specs(2)) == 240
    for spec in specs:
        assert parse(caption(spec)) == spec
    assert caption(parse("a blue sphere and a yellow cube")) == "a blue sphere and a yellow cube"
    assert parse("a red cube, a green cone and a blue torus").objects[1] == ObjectSpec("cone", "green")


@pytest.mark.parametrize("bad", ["a purple cube", "two red cubes", "a red cube and a red cube", "red cube",
                                 "a red cube on top of a blue sphere and a green cone", ""])
def test_parse_rejects_captions_outside_the_grammar(bad):
    with pytest.raises(CaptionError):
        parse(bad)


def test_sampled_scenes_follow_the_mixture():
    g = torch.Generator().manual_seed(0)
    specs = sample_specs(3000, SceneSampling(p_one=0.3), g)
    one = sum(len(s.objects) == 1 for s in specs) / len(specs)
    assert abs(one - 0.3) < 0.04
    assert all(len(s.objects) in (1, 2) for s in specs)
    # uniform over the 240 two-object captions: every colour appears as the first object
    firsts = {s.objects[0].colour for s in specs if len(s.objects) == 2}
    assert firsts == set(COLOURS)


# -- signed distances -------------------------------------------------------------------------


def inside_analytic(name: str, p: torch.Tensor, geo: ShapeGeometry) -> torch.Tensor:
    x, y, z = p.unbind(-1)
    if name == "sphere":
        return p.norm(dim=-1) < geo.sphere_radius
    if name == "cube":  # ignore the thin rounded-edge band by testing the unrounded box
        return (p.abs() < geo.cube_half_extent).all(-1)
    if name == "cone":
        h, r = geo.cone_half_height, geo.cone_radius
        return (z.abs() < h) & (torch.sqrt(x**2 + y**2) < r * (h - z) / (2 * h))
    a = math.radians(geo.torus_tilt_deg)
    yy = math.cos(a) * y + math.sin(a) * z
    zz = -math.sin(a) * y + math.cos(a) * z
    return (torch.sqrt(x**2 + yy**2) - geo.torus_major) ** 2 + zz**2 < geo.torus_minor**2


@pytest.mark.parametrize("name", SHAPES)
def test_sdf_sign_matches_the_solid_and_is_one_lipschitz(name):
    geo = ShapeGeometry()
    g = torch.Generator().manual_seed(1)
    p = (torch.rand(20000, 3, generator=g) * 2 - 1) * 0.7
    d = SDFS[name](p, geo)
    inside = inside_analytic(name, p, geo)
    far = d.abs() > 0.04  # away from the surface (the cube's rounding changes the sign only there)
    assert inside.any() and (~inside).any()
    assert torch.equal((d < 0)[far], inside[far])
    q = p + 0.05 * torch.randn(p.shape, generator=g)
    assert ((SDFS[name](q, geo) - d).abs() <= (q - p).norm(dim=-1) + 1e-5).all()


# -- renderer -------------------------------------------------------------------------------


def test_red_cube_at_the_origin_is_red_in_the_centre_and_grey_in_the_corners():
    img = render(["a red cube"])[0]  # [32, 32, 3]
    centre = img[14:18, 14:18].reshape(-1, 3).mean(0)
    assert centre[0] > 0.4 and centre[1] < 0.2 and centre[2] < 0.2
    bg = WORLD.shading.background
    for corner in (img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]):
        assert torch.allclose(corner, torch.full((3,), bg))


def colour_mask(img: torch.Tensor, colour: str) -> torch.Tensor:
    """[H, W] pixels whose chromaticity is closest to `colour` and clearly not grey."""
    table = torch.tensor([WORLD.shading.colours_rgb[c] for c in COLOURS])
    chroma = img / img.sum(-1, keepdim=True).clamp_min(1e-6)
    ref = table / table.sum(-1, keepdim=True)
    nearest = (chroma[..., None, :] - ref).norm(dim=-1).argmin(-1)
    saturated = (img.max(-1).values - img.min(-1).values) > 0.2
    return saturated & (nearest == COLOURS.index(colour))


def test_two_objects_stand_left_and_right_and_swap_when_seen_from_behind():
    front, back = render(["a blue sphere and a yellow cube"] * 2, azimuth=0.0)[0], render(
        ["a blue sphere and a yellow cube"], azimuth=180.0)[0]
    cols = torch.arange(32).float()

    def mean_col(img, colour):
        m = colour_mask(img, colour)
        assert m.sum() > 10, f"no {colour} object visible"
        return (m.float() * cols).sum() / m.sum()

    # front view: camera on +x, its right is +y; object 1 (blue) sits at -y -> left of the image
    assert mean_col(front, "blue") < 14 < 18 < mean_col(front, "yellow")
    assert mean_col(back, "yellow") < 14 < 18 < mean_col(back, "blue")


def test_stacked_object_is_above_in_the_image_and_elevation_looks_down():
    img = render(["a red cube on top of a blue sphere"], elevation=10.0)[0]
    rows = torch.arange(32).float()[:, None]
    red, blue = colour_mask(img, "red"), colour_mask(img, "blue")
    assert (red.float() * rows).sum() / red.sum() < (blue.float() * rows).sum() / blue.sum()  # row 0 is the top
    # a sphere seen from high above fills a round blob: the top view is not empty either
    top = render(["a green sphere"], elevation=60.0)[0]
    assert colour_mask(top, "green")[12:20, 12:20].all()


def test_supersampling_averages_the_fine_render():
    cfg = WorldConfig()
    batch = layout([parse("a green cone")], cfg.layout, cfg.geometry, None)
    coarse = render_scenes(batch, front_cameras(1, size=32), cfg)
    cfg_fine = WorldConfig()
    cfg_fine.tracer.supersample = 1
    fine = render_scenes(batch, front_cameras(1, size=64), cfg_fine)
    pooled = fine.reshape(1, 32, 2, 32, 2, 3).mean(dim=(2, 4))
    assert torch.allclose(coarse, pooled, atol=1e-5)


def test_renderer_speed_is_measured(capsys):
    g = torch.Generator().manual_seed(3)
    t0 = time.perf_counter()
    chunk = render_chunk(128, 5, WORLD, SceneSampling(p_one=0.3))
    dt = time.perf_counter() - t0
    assert chunk["images"].shape == (128, 32, 32, 3) and chunk["images"].dtype == torch.uint8
    # every image shows something besides background
    bg = round(WORLD.shading.background * 255)
    assert ((chunk["images"].int() - bg).abs().amax(dim=(1, 2, 3)) > 60).all()
    with capsys.disabled():
        print(f"\n[toyworld] renderer: {128 / dt:.0f} images/s at 32x32 with 2x2 supersampling "
              f"({torch.get_num_threads()} threads)")


def test_dataset_chunks_are_deterministic_and_cached(tmp_path):
    a = build_dataset(tmp_path, 40, seed=9, world=WORLD, scenes=SceneSampling(p_one=0.5), chunk=16, log=lambda m: None)
    files = sorted(tmp_path.rglob("chunk*.safetensors"))
    assert len(files) == 3
    files[1].unlink()  # a lost chunk is re-rendered identically
    b = build_dataset(tmp_path, 40, seed=9, world=WORLD, scenes=SceneSampling(p_one=0.5), chunk=16, log=lambda m: None)
    for k in a:
        assert torch.equal(a[k], b[k])
    caps = captions_of(a)
    assert len(caps) == 40 and all(parse(c) for c in caps)
    other = build_dataset(tmp_path, 40, seed=10, world=WORLD, scenes=SceneSampling(p_one=0.5), chunk=16, log=lambda m: None)
    assert not torch.equal(a["images"], other["images"])
