"""Every method, two optimisation steps on CPU on the full-size random-weight sets (slow: minutes).

The networks are the real SD 1.5 / IP-Adapter-Plus / ViT-H and SD 2.1-base / OpenCLIP-H text /
ControlNet sizes (random weights, built once into the model cache and reused), loaded by the one
loader and trained by the one loop; only the activations are small: one 64 px view, 64 px VAE
input (8x8 latents), 1024 Gaussians. To keep CI at a few minutes each set is loaded once and
shared by its methods in one process, the methods that change the networks (finetune, VSD's
LoRA) last. tests/perf/fullsize_cpu.py measures the same at 4 views with one process per method
(results/perf/fullsize_cpu.json).

sds and sds-bridge run on sd21-random here (GaussianDreamer's SDS base model is SD 2.1-base), so
that the UNet they share carries no IP-Adapter.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SIZE, VAE_SIZE, VIEWS, STEPS, POINTS = 64, 64, 1, 2, 1024
# (set, components loaded once for all its methods, methods in order: the trainers last)
GROUPS = [
    ("sd15-random", {"ip_adapter"}, ["anchords-ipa", "anchords-ipa-filter", "anchords-ipa-finetune"]),
    ("sd21-random", {"controlnet"}, ["sds", "sds-bridge", "anchords-cn", "anchords-cn-filter", "anchords-cn-finetune", "vsd"]),
]
CASES = [(models, comps, method) for models, comps, methods in GROUPS for method in methods]
TRAINERS = {"anchords-ipa-finetune", "anchords-cn-finetune", "vsd"}
_loaded: dict = {}  # one set at a time: {(models, components): Models}


def _perf():
    spec = importlib.util.spec_from_file_location("fullsize_cpu", REPO / "tests" / "perf" / "fullsize_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free() -> None:
    """Drop the loaded set and hand its memory back to the OS (glibc keeps freed heap otherwise)."""
    _loaded.clear()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: the memory is reused by the next load all the same
        pass


def _nets(models: str, components: set):
    from generators.models.loader import load_models

    key = (models, frozenset(components))
    if key not in _loaded:
        _free()  # the other set (7-8 GB) before loading this one
        _loaded[key] = load_models(models, components, "cpu")
    return _loaded[key]


@pytest.mark.parametrize("models, components, method", CASES, ids=[f"{m}-{x}" for m, _, x in CASES])
def test_method_trains_two_steps_on_the_full_size_networks(models, components, method):
    from generators.train import required_components

    perf = _perf()
    cfg = perf.run_config(method, models, SIZE, VAE_SIZE, STEPS, POINTS, VIEWS)
    if cfg.guidance.filter.enabled:
        # random networks reconstruct nothing: every view's L_rec is far above gamma = 0.03 and the
        # filter would drop them all (no colour gradient at all); let them pass to run the whole path
        cfg.guidance.filter.gamma = 1e9
    assert required_components(cfg) <= components | {"base"}
    row = perf.train_steps(cfg, _nets(models, components))
    assert row["unet_parameters"] > 850_000_000  # the full-size UNet, not the tiny one
    assert row["steps"] == STEPS and row["all_losses_finite"], row
    assert row["gaussians_max_change"]["means"] > 0 and row["gaussians_max_change"]["sh0"] > 0, row
    if method in TRAINERS:
        if method == "vsd":
            # the mid block works on 1x1 latents here: its self-attention over one token has no
            # gradient for q and k, so those two LoRA B matrices stay at their zero init
            assert row["trainable_tensors_changed"] >= row["trainable_tensors"] - 2 > 0, row
        else:
            assert row["trainable_tensors"] > 0 and row["trainable_tensors_changed"] == row["trainable_tensors"], row
    else:
        assert not row["trainable"]
    if method == CASES[-1][2]:
        _free()  # the last one: give the memory back to the rest of the suite
