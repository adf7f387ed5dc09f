"""Latent codecs: shapes, exact pixel round trip, VAE 64 px <-> 8x8, gradients through encode."""

from __future__ import annotations

import pytest
import torch

from generators.models.codec import LatentCodec, PixelUnshuffleCodec, VaeCodec
from generators.models.loader import load_models


def test_pixel_unshuffle_round_trip_is_exact():
    codec = PixelUnshuffleCodec(2)
    x = torch.rand(3, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    z = codec.encode(x)
    assert z.shape == (3, 12, 8, 6) and codec.latent_channels == 12 and codec.downsample == 2
    assert z.min() >= -1 and z.max() <= 1  # 2x - 1
    assert torch.allclose(codec.decode(z), x, atol=1e-6)
    assert isinstance(codec, LatentCodec)


def test_pixel_unshuffle_is_differentiable_and_checks_sizes():
    codec = PixelUnshuffleCodec(2)
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    codec.encode(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 2.0))
    with pytest.raises(ValueError, match="divisible"):
        codec.encode(torch.rand(1, 3, 5, 4))


@pytest.fixture(scope="module")
def vae_codec():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        models = load_models("tiny", {"base"}, "cpu")
    finally:
        mp.undo()
    assert isinstance(models.codec, VaeCodec)
    return models.codec


def test_vae_codec_maps_64px_to_8x8_latents_and_back(vae_codec):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = vae_codec.encode(x, latent_sample="mean")
        rgb = vae_codec.decode(z)
    assert z.shape == (2, 4, 8, 8) and vae_codec.downsample == 8 and vae_codec.latent_channels == 4
    assert rgb.shape == x.shape and rgb.min() >= 0 and rgb.max() <= 1
    with torch.no_grad():  # latents carry the scaling factor the UNet expects
        raw = vae_codec.vae.encode(x * 2 - 1).latent_dist.mean
    assert torch.allclose(z, raw * 0.18215, atol=1e-6)


def test_vae_codec_sampling_is_seeded_and_differs_from_the_mean(vae_codec):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = vae_codec.encode(x, generator=torch.Generator().manual_seed(5))
        b = vae_codec.encode(x, generator=torch.Generator().manual_seed(5))
        mean = vae_codec.encode(x, latent_sample="mean")
    assert torch.equal(a, b)
    assert not torch.allclose(a, mean)


def test_vae_codec_gradient_reaches_the_image(vae_codec):
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    vae_codec.encode(x, latent_sample="mean").square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in vae_codec.vae.parameters())  # the VAE itself stays frozen
