"""ToyWorld data sets: random scenes from random views, rendered in chunks and cached on disk.

A data set is fully determined by (world config, size, seed): chunk i is rendered with its own
generator seeded from (seed, i), so any chunk can be re-rendered alone and a cache that lost a
chunk heals itself. Each chunk is one safetensors file written atomically:

    images   [N, H, W, 3] uint8
    objects  [N, 3] long   object class ids (ObjectSpec.index) in caption order, -1 = none
    relation [N] long      index into world.RELATIONS
    views    [N, 4] float  elevation, azimuth, distance (world units), fov_y (degrees)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from generators.cameras import Cameras, make_cameras
from generators.io import atomic_write, atomic_write_json
from generators.toyworld.config import COLOURS, SHAPES, SceneSampling, ViewSampling, WorldConfig
from generators.toyworld.sdf_render import render_scenes
from generators.toyworld.world import RELATIONS, ObjectSpec, SceneSpec, caption, layout, sample_specs

RENDER_BATCH = 256  # images traced together (memory: ~4k rays each at 2x2 supersampling)


def sample_views(n: int, cfg: ViewSampling, size: int, generator: torch.Generator) -> Cameras:
    """`n` cameras: azimuth and elevation uniform in their ranges, jittered distance, fixed fov."""
    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    azimuth = uniform(*cfg.azimuth_range_deg)
    elevation = uniform(*cfg.elevation_range_deg)
    distance = uniform(cfg.distance - cfg.distance_jitter, cfg.distance + cfg.distance_jitter)
    fov = torch.full((n,), cfg.fov_y_deg)
    return make_cameras(elevation, azimuth, distance, fov, size, size)


def render_specs(specs: list[SceneSpec], cameras: Cameras, cfg: WorldConfig, generator: torch.Generator | None) -> Tensor:
    """Lay out and render scene i from camera i -> [B, H, W, 3] float in [0, 1]."""
    out = []
    for start in range(0, len(specs), RENDER_BATCH):
        part = specs[start:start + RENDER_BATCH]
        batch = layout(part, cfg.layout, cfg.geometry, generator)
        out.append(render_scenes(batch, cameras.subset(list(range(start, start + len(part)))), cfg))
    return torch.cat(out)


def encode_specs(specs: list[SceneSpec]) -> tuple[Tensor, Tensor]:
    objects = torch.full((len(specs), 3), -1, dtype=torch.long)
    relation = torch.zeros(len(specs), dtype=torch.long)
    for i, s in enumerate(specs):
        for j, o in enumerate(s.objects):
            objects[i, j] = o.index
        relation[i] = RELATIONS.index(s.relation)
    return objects, relation


def decode_spec(objects_row: list[int], relation: int) -> SceneSpec:
    objs = tuple(ObjectSpec(SHAPES[i // len(COLOURS)], COLOURS[i % len(COLOURS)]) for i in objects_row if i >= 0)
    return SceneSpec(objs, RELATIONS[relation])


def captions_of(chunk: dict[str, Tensor]) -> list[str]:
    return [caption(decode_spec(o, r)) for o, r in zip(chunk["objects"].tolist(), chunk["relation"].tolist())]


def render_chunk(n: int, seed: int, world: WorldConfig, scenes: SceneSampling) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    specs = sample_specs(n, scenes, g)
    cams = sample_views(n, world.views, world.tracer.size, g)
    images = render_specs(specs, cams, world, g)
    objects, relation = encode_specs(specs)
    views = torch.stack([cams.elevation_deg, cams.azimuth_deg, cams.distance, torch.rad2deg(cams.fov_y)], -1)
    return {
        "images": (images * 255.0).round().clamp(0, 255).to(torch.uint8),
        "objects": objects,
        "relation": relation,
        "views": views.float(),
    }


def dataset_key(seed: int, chunk: int, world: WorldConfig, scenes: SceneSampling) -> str:
    """A short hash of everything that determines the pixels of a chunk (so a recipe change never
    reuses a cache). The size is not part of it: a data set of n images is the first n of its seed's."""
    recipe = {"seed": seed, "chunk": chunk, "world": asdict(world), "scenes": asdict(scenes)}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def chunk_seed(seed: int, index: int) -> int:
    return seed * 1_000_003 + index


def dataset_folder(root: str | Path, seed: int, chunk: int, world: WorldConfig, scenes: SceneSampling) -> Path:
    return Path(root) / f"s{seed}-c{chunk}-{dataset_key(seed, chunk, world, scenes)}"


def load_chunk(root: str | Path, index: int, seed: int, world: WorldConfig, scenes: SceneSampling,
               chunk: int = 2000, size: int | None = None, log=print) -> dict[str, Tensor]:
    """Chunk `index` of a data set (rendered and cached on first use). `size` < chunk truncates it."""
    folder = dataset_folder(root, seed, chunk, world, scenes)
    path = folder / f"chunk{index:04d}.safetensors"
    if path.exists():
        part = load_file(str(path))
    else:
        part = render_chunk(chunk, chunk_seed(seed, index), world, scenes)
        atomic_write(path, lambda p, t=part: save_file(t, str(p)))
        if not (folder / "recipe.json").exists():
            atomic_write_json(folder / "recipe.json", {"seed": seed, "chunk": chunk, "world": asdict(world),
                                                       "scenes": asdict(scenes)})
        log(f"rendered chunk {index} -> {path}")
    if size is not None and size < chunk:
        part = {k: v[:size] for k, v in part.items()}
    return part


def build_dataset(root: str | Path, n: int, seed: int, world: WorldConfig, scenes: SceneSampling,
                  chunk: int = 2000, log=print) -> dict[str, Tensor]:
    """The first `n` images of the data set (seed, chunk size, recipe), concatenated."""
    parts = [load_chunk(root, i, seed, world, scenes, chunk, size=min(chunk, n - i * chunk), log=log)
             for i in range(math.ceil(n / chunk))]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
