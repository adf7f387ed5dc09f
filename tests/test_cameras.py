"""Camera sampling (GaussianDreamer's recipe), matrices, and view-dependent prompts."""

import math

import pytest
import torch

from generators.cameras import (
    make_cameras,
    orbit_cameras,
    sample_training_cameras,
    view_dependent_prompts,
    view_direction_names,
)
from generators.config import CameraConfig


def test_training_sampler_respects_every_range_and_stratifies_azimuth():
    cfg = CameraConfig()
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        cams = sample_training_cameras(cfg, g)
        assert len(cams) == 4
        assert ((cams.distance >= 1.5) & (cams.distance <= 4.0)).all()
        assert ((cams.elevation_deg >= -10 - 1e-4) & (cams.elevation_deg <= 60 + 1e-4)).all()
        fov = torch.rad2deg(cams.fov_y)
        assert ((fov >= 40 - 1e-4) & (fov <= 70 + 1e-4)).all()
        # one azimuth in each quarter of (-180, 180]
        strata = ((cams.azimuth_deg + 180) // 90).clamp(max=3).long().tolist()
        assert sorted(strata) == [0, 1, 2, 3]
        torch.testing.assert_close(cams.positions.norm(dim=-1), cams.distance)


def test_mixed_elevation_sampling_uses_both_modes():
    """Half the batches uniform in degrees, half uniform on the sphere: the sphere mode puts less mass
    near the top of the range, so the pooled mean sits between the two pure modes."""
    def mean_elevation(mode):
        cfg = CameraConfig(elevation_sampling=mode, batch_size=64)
        g = torch.Generator().manual_seed(1)
        return torch.cat([sample_training_cameras(cfg, g).elevation_deg for _ in range(100)]).mean().item()

    degrees, sphere, mixed = (mean_elevation(m) for m in ("uniform-degrees", "uniform-sphere", "mixed"))
    assert degrees == pytest.approx(25.0, abs=1.0)
    assert sphere < degrees - 2.0
    assert sphere + 0.5 < mixed < degrees - 0.5


def test_threestudio_sphere_half_is_its_inverse_transform_and_the_default():
    """GaussianDreamer's threestudio: sin(elevation) = 2u - 1, u ~ U[(lo + 90) / 180, (hi + 90) / 180],
    so for (-10, 60) the "sphere" batches cover only [asin(-1/9), asin(2/3)] = [-6.4, 41.8] degrees."""
    assert CameraConfig().elevation_sampling == "mixed-threestudio"  # the recipe as it runs
    lo_deg, hi_deg = math.degrees(math.asin(-10 / 90)), math.degrees(math.asin(60 / 90))

    def elevations(mode, batches=200):
        cfg = CameraConfig(elevation_sampling=mode, batch_size=16)
        g = torch.Generator().manual_seed(2)
        return [sample_training_cameras(cfg, g).elevation_deg for _ in range(batches)]

    sphere = torch.cat(elevations("threestudio-sphere"))
    assert sphere.min() >= lo_deg - 1e-4 and sphere.max() <= hi_deg + 1e-4
    assert sphere.min() < lo_deg + 1.0 and sphere.max() > hi_deg - 1.0  # and fills that band
    sines = torch.sin(torch.deg2rad(sphere))
    assert sines.mean().item() == pytest.approx(25 / 90, abs=0.01)  # uniform on [-1/9, 2/3]
    # mixed-threestudio: whole batches from either mode, about half each
    narrow = [bool(((b >= lo_deg - 1e-4) & (b <= hi_deg + 1e-4)).all()) for b in elevations("mixed-threestudio")]
    assert 0.35 < sum(narrow) / len(narrow) < 0.75  # the degrees half rarely lands all 16 inside
    assert not all(narrow)


def test_matrices_look_at_the_origin_and_agree():
    cams = make_cameras(torch.tensor([0.0, 30.0, 89.9]), torch.tensor([0.0, 90.0, 45.0]),
                        torch.tensor([2.0, 3.0, 4.0]), torch.tensor([60.0, 45.0, 30.0]), 64, 48)
    for i in range(3):
        c2w = cams.c2w[i]
        forward = -c2w[:3, 2]  # OpenGL cameras look down -z
        torch.testing.assert_close(forward, -c2w[:3, 3] / c2w[:3, 3].norm(), atol=1e-5, rtol=0)
        torch.testing.assert_close(c2w[:3, :3] @ c2w[:3, :3].T, torch.eye(3), atol=1e-5, rtol=0)
        assert torch.det(c2w[:3, :3]) > 0
        # viewmat (OpenCV) maps the origin to (0, 0, distance): straight ahead, positive z
        origin_cam = cams.viewmats[i] @ torch.tensor([0.0, 0.0, 0.0, 1.0])
        torch.testing.assert_close(origin_cam[:3], torch.tensor([0.0, 0.0, float(cams.distance[i])]), atol=1e-5, rtol=0)
    K = cams.Ks[0]
    assert K[0, 2] == 32 and K[1, 2] == 24
    assert K[1, 1].item() == pytest.approx(24 / math.tan(math.radians(30)))
    # azimuth 0 sits on +x, azimuth 90 on +y
    torch.testing.assert_close(cams.positions[0], torch.tensor([2.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    assert cams.positions[1, 1] > 0 and abs(cams.positions[1, 0]) < 1e-5


def test_orbit_starts_at_the_front_and_spaces_azimuths_evenly():
    cams = orbit_cameras(8, 15.0, 4.0, 70.0, 32, 32)
    assert cams.azimuth_deg.tolist()[:3] == pytest.approx([0.0, 45.0, 90.0])
    assert (cams.elevation_deg == 15.0).all()


@pytest.mark.parametrize("azimuth, elevation, name", [
    (0.0, 10.0, "front"), (44.0, 10.0, "front"), (46.0, 10.0, "side"), (-90.0, 0.0, "side"),
    (136.0, 0.0, "back"), (-170.0, 5.0, "back"), (0.0, 61.0, "overhead"), (180.0, 70.0, "overhead"),
])
def test_view_direction_thresholds(azimuth, elevation, name):
    cams = make_cameras(torch.tensor([elevation]), torch.tensor([azimuth]), torch.tensor([3.0]),
                        torch.tensor([50.0]), 8, 8)
    assert view_direction_names(cams, CameraConfig()) == [name]


def test_view_dependent_prompts_and_switch():
    cams = make_cameras(torch.tensor([0.0, 0.0, 80.0]), torch.tensor([0.0, 180.0, 0.0]), torch.full((3,), 3.0),
                        torch.full((3,), 50.0), 8, 8)
    assert view_dependent_prompts("a cat", cams, CameraConfig()) == [
        "a cat, front view", "a cat, back view", "a cat, overhead view"]
    assert view_dependent_prompts("a cat", cams, CameraConfig(view_dependent_prompting=False)) == ["a cat"] * 3
