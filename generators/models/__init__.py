"""Model sets and the one loader (see spec.py for the set format, loader.py for loading).

    from generators.models import load_models
    models = load_models("tiny", {"base", "ip_adapter"}, "cpu")

Names are imported lazily so that reading a set spec does not pull in diffusers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_models": "generators.models.loader",
    "Models": "generators.models.loader",
    "load_set_spec": "generators.models.spec",
    "available_sets": "generators.models.spec",
    "ModelSetSpec": "generators.models.spec",
    "LatentCodec": "generators.models.codec",
    "VaeCodec": "generators.models.codec",
    "PixelUnshuffleCodec": "generators.models.codec",
    "shap_e_point_cloud": "generators.models.shap_e",
    "ensure_tiny_set": "generators.models.tiny",
    "build_tiny_set": "generators.models.tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'generators.models' has no attribute {name!r}")
