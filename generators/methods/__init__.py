"""Methods are presets: YAML files in `presets/` (name = CLI name), each a partial RunConfig.

A preset has `description`, optional `extends: <method>`, optional `models: <default model set>`
and `config:` (a nested partial RunConfig). A run's config is resolved in this order, each layer
overriding the previous one:

    RunConfig defaults -> method preset chain -> model set `run_defaults`
        -> model set `method_run_defaults` of the preset chain (base first) -> user overrides
A model set's `method_run_defaults` is how a set tunes one method without touching the others
(the `toy` set's guidance scale suits CFG methods; VSD keeps its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from generators.config import ConfigError, RunConfig, config_from_dict, deep_merge
from generators.errors import UserError
from generators.untrusted import brief, safe_load

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
_PRESET_KEYS = {"description", "extends", "models", "config"}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    models: str
    config: dict  # fully merged along `extends`
    lineage: tuple[str, ...] = ()  # this preset, then the presets it extends, nearest first


class UnknownMethodError(UserError):
    pass


@lru_cache(maxsize=None)
def _read_preset(name: str) -> dict:
    # a method is one of the shipped presets, by name: never a path (`../x` would load any yaml)
    if not isinstance(name, str) or name not in method_names():
        raise UnknownMethodError(f"unknown method {brief(name)}; valid methods: {', '.join(method_names())}")
    path = PRESETS_DIR / f"{name}.yaml"
    data = safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(data) - _PRESET_KEYS
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    return data


def method_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def get_method(name: str) -> Method:
    chain = []
    seen = set()
    seen_order: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            raise UserError(f"method presets extend each other in a cycle: {' -> '.join([*seen_order, current])}")
        seen.add(current)
        seen_order.append(current)
        data = _read_preset(current)
        chain.append(data)
        current = data.get("extends")
    config: dict = {}
    models = None
    for data in reversed(chain):
        config = deep_merge(config, data.get("config") or {})
        models = data.get("models", models)
    return Method(name, chain[0].get("description", ""), models or "sd15", config, tuple(seen_order))


def list_methods() -> list[Method]:
    return [get_method(n) for n in method_names()]


def resolve_run_config(method: str, *, prompt: str = "", seed: int = 0, models: str | None = None,
                       overrides: dict | None = None) -> RunConfig:
    """The full RunConfig of one run. Raises UserError on unknown methods or bad overrides."""
    from generators.models.spec import load_set_spec

    m = get_method(method)
    models = models or m.models
    data = deep_merge(m.config, {"method": method, "prompt": prompt, "seed": seed, "models": models})
    spec = load_set_spec(models)
    data = deep_merge(data, {"models_version": spec.version})
    data = deep_merge(data, spec.run_defaults or {})
    unknown = sorted(set(spec.method_run_defaults) - set(method_names()))
    if unknown:
        raise UserError(f"{spec.file}: method_run_defaults names unknown method(s) {', '.join(unknown)}")
    for ancestor in reversed(m.lineage):
        data = deep_merge(data, spec.method_run_defaults.get(ancestor) or {})
    data = deep_merge(data, overrides or {})
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise UserError(f"bad configuration for method {method!r}: {e}") from None
