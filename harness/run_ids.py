"""Deterministic run ids: the same spec always lands in the same directory.

    <prompt slug>-<12 hex of the config hash>     e.g. a-red-apple-3f9c2a1b7d0e

The hash covers every setting that changes the result (generators.config.config_hash: method
config, prompt, seed, model set; not the checkpoint cadence) plus the step budget, so a changed
setting makes a new run. The slug is lowercase ASCII letters, digits and dashes only: a prompt can
never make a path leave the results folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

from generators.config import RunConfig, config_hash_of_dict, config_to_dict, hashed_settings

SLUG_MAX = 48


def slugify(text: str, max_len: int = SLUG_MAX) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return (slug[:max_len].rstrip("-")) or "prompt"


def run_id_of_dict(d: dict) -> str:
    """The run id of a config given as `config_to_dict(cfg)` (the planner's fast path)."""
    full = hashlib.sha256(f"{config_hash_of_dict(d)}|steps={d['steps']}".encode()).hexdigest()[:12]
    return f"{slugify(d['prompt'])}-{full}"


class RunIdTemplate:
    """Run ids of one config with only the prompt and seed varying, 8100 of them in ~0.1 s.

    `json.dumps(d, sort_keys=True)` of the hashed dict is assembled from its top-level entries,
    each serialised once; only the prompt and seed entries are serialised per run.
    """

    def __init__(self, d: dict):
        hashed = hashed_settings(d)
        self._keys = sorted(hashed)
        self._parts = {k: f"{json.dumps(k)}: {json.dumps(hashed[k], sort_keys=True)}" for k in self._keys}
        self._steps = d["steps"]

    def run_id(self, prompt: str, seed: int) -> str:
        parts = dict(self._parts)
        parts["prompt"] = f'"prompt": {json.dumps(prompt)}'
        parts["seed"] = f'"seed": {json.dumps(seed)}'
        text = "{" + ", ".join(parts[k] for k in self._keys) + "}"
        chash = hashlib.sha256(text.encode()).hexdigest()[:16]
        full = hashlib.sha256(f"{chash}|steps={self._steps}".encode()).hexdigest()[:12]
        return f"{slugify(prompt)}-{full}"


def run_id(cfg: RunConfig) -> str:
    return run_id_of_dict(config_to_dict(cfg))
