"""Deterministic run ids: the same spec always lands in the same directory.

    <prompt slug>-<12 hex of the config hash>     e.g. a-red-apple-3f9c2a1b7d0e

The hash covers every setting that changes the result (generators.train.config_hash: method
config, prompt, seed, model set; not the checkpoint cadence), so a changed setting makes a new run.
The slug is lowercase ASCII letters, digits and dashes only: a prompt can never make a path leave
the results folder.
"""

from __future__ import annotations

import re
import unicodedata

from generators.config import RunConfig

SLUG_MAX = 48


def slugify(text: str, max_len: int = SLUG_MAX) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return (slug[:max_len].rstrip("-")) or "prompt"


def run_id(cfg: RunConfig) -> str:
    from generators.train import config_hash

    import hashlib

    full = hashlib.sha256(f"{config_hash(cfg)}|steps={cfg.steps}".encode()).hexdigest()[:12]
    return f"{slugify(cfg.prompt)}-{full}"
