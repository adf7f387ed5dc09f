"""ToyWorld scenes: a few coloured primitives, the caption grammar, and the object layout.

Grammar (every caption the world knows, and nothing else):

    caption  := object                                   one object at the origin
              | object " and " object                    side by side (object 1 left from the front)
              | object ", " object " and " object        three in a row
              | object " on top of " object              object 1 stands on object 2
    object   := "a " colour " " shape
    colour   := red | green | blue | yellow
    shape    := cube | sphere | cone | torus

`parse(caption(spec)) == spec` for every spec, and objects within one scene are distinct.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from generators.toyworld.config import COLOURS, SHAPES, LayoutConfig, SceneSampling, ShapeGeometry

RELATIONS = ("beside", "on")  # "and" (side by side, any count) / "on top of" (two objects)


class CaptionError(ValueError):
    """A caption outside the ToyWorld grammar."""


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise CaptionError(f"unknown shape {self.shape!r} (known: {', '.join(SHAPES)})")
        if self.colour not in COLOURS:
            raise CaptionError(f"unknown colour {self.colour!r} (known: {', '.join(COLOURS)})")

    @property
    def index(self) -> int:
        """Class id in 0..15 (shape-major), the judge's object label."""
        return SHAPES.index(self.shape) * len(COLOURS) + COLOURS.index(self.colour)


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    relation: str = "beside"

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 3:
            raise CaptionError(f"a scene holds 1 to 3 objects, got {len(self.objects)}")
        if len(set(self.objects)) != len(self.objects):
            raise CaptionError("objects of one scene must be distinct")
        if self.relation not in RELATIONS:
            raise CaptionError(f"unknown relation {self.relation!r}")
        if self.relation == "on" and len(self.objects) != 2:
            raise CaptionError("'on top of' relates exactly two objects")


def object_phrase(obj: ObjectSpec) -> str:
    return f"a {obj.colour} {obj.shape}"


def caption(spec: SceneSpec) -> str:
    words = [object_phrase(o) for o in spec.objects]
    if spec.relation == "on":
        return f"{words[0]} on top of {words[1]}"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def _parse_object(text: str) -> ObjectSpec:
    parts = text.strip().split(" ")
    if len(parts) != 3 or parts[0] != "a":
        raise CaptionError(f"expected 'a <colour> <shape>', got {text!r}")
    return ObjectSpec(shape=parts[2], colour=parts[1])


def parse(text: str) -> SceneSpec:
    """The scene a caption names; raises CaptionError outside the grammar."""
    text = text.strip()
    if " on top of " in text:
        top, bottom = text.split(" on top of ", 1)
        return SceneSpec((_parse_object(top), _parse_object(bottom)), relation="on")
    if " and " in text:
        head, last = text.rsplit(" and ", 1)
        return SceneSpec(tuple(_parse_object(p) for p in head.split(", ")) + (_parse_object(last),))
    return SceneSpec((_parse_object(text),))


def all_objects() -> list[ObjectSpec]:
    return [ObjectSpec(s, c) for s in SHAPES for c in COLOURS]


def all_specs(count: int, relation: str = "beside") -> list[SceneSpec]:
    """Every scene of `count` distinct, ordered objects (16 one-object, 240 two-object scenes)."""
    return [SceneSpec(objs, relation) for objs in itertools.permutations(all_objects(), count)]


def sample_specs(n: int, cfg: SceneSampling, generator: torch.Generator) -> list[SceneSpec]:
    """`n` scenes: the kind by cfg's probabilities, then uniform over that kind's captions."""
    kinds = {"one": all_specs(1), "two": all_specs(2)}
    if cfg.p_three > 0:
        kinds["three"] = all_specs(3)
    if cfg.p_stack > 0:
        kinds["stack"] = all_specs(2, "on")
    probs = {"one": cfg.p_one, "three": cfg.p_three, "stack": cfg.p_stack}
    probs["two"] = 1.0 - sum(probs.values())
    names = list(kinds)
    weights = torch.tensor([probs[k] for k in names], dtype=torch.float64)
    kind_ids = torch.multinomial(weights, n, replacement=True, generator=generator)
    out = []
    for k in kind_ids.tolist():
        pool = kinds[names[k]]
        out.append(pool[int(torch.randint(len(pool), (1,), generator=generator))])
    return out


# ----------------------------------------------------------------------------------------------
# Layout: scene specs -> padded per-object tensors the renderer consumes


@dataclass
class SceneBatch:
    """B scenes of up to K objects; absent slots have shape_id -1."""

    shape_id: Tensor  # [B, K] long, -1 = empty
    colour_id: Tensor  # [B, K] long
    centre: Tensor  # [B, K, 3] world position of each object's centre
    yaw: Tensor  # [B, K] radians about world z
    scale: Tensor  # [B, K]

    def __len__(self) -> int:
        return self.shape_id.shape[0]


def _object_half_height(shape: str, geo: ShapeGeometry) -> float:
    """Half the vertical extent at scale 1 (for stacking one object on another)."""
    if shape == "sphere":
        return geo.sphere_radius
    if shape == "cube":
        return geo.cube_half_extent
    if shape == "cone":
        return geo.cone_half_height
    # tilted ring: vertical extent of a circle of radius R tilted by t, plus the tube
    return geo.torus_major * math.sin(math.radians(geo.torus_tilt_deg)) + geo.torus_minor


def layout(specs: list[SceneSpec], cfg: LayoutConfig, geo: ShapeGeometry, generator: torch.Generator | None,
           max_objects: int = 3) -> SceneBatch:
    """Place every scene's objects. With a generator, yaw and scale jitter are random."""
    b, k = len(specs), max_objects
    shape_id = torch.full((b, k), -1, dtype=torch.long)
    colour_id = torch.zeros((b, k), dtype=torch.long)
    centre = torch.zeros(b, k, 3)
    yaw = torch.zeros(b, k)
    scale = torch.zeros(b, k)
    if generator is not None:
        jitter = 1.0 + cfg.scale_jitter * (2.0 * torch.rand(b, k, generator=generator) - 1.0)
        yaws = 2.0 * math.pi * torch.rand(b, k, generator=generator) if cfg.random_yaw else torch.zeros(b, k)
    else:
        jitter, yaws = torch.ones(b, k), torch.zeros(b, k)
    for i, spec in enumerate(specs):
        n = len(spec.objects)
        if spec.relation == "on":
            s = cfg.stack_scale
            h_top = _object_half_height(spec.objects[0].shape, geo) * s * jitter[i, 0]
            h_bot = _object_half_height(spec.objects[1].shape, geo) * s * jitter[i, 1]
            base = -0.5 * (h_top + h_bot)  # centre the stack vertically
            zs = [base + h_bot + h_top, base]
            pos = [(0.0, 0.0, float(z)) for z in zs]
            scales = [s, s]
        elif n == 1:
            pos, scales = [(0.0, 0.0, 0.0)], [cfg.one_scale]
        elif n == 2:
            d = cfg.two_offset
            pos, scales = [(0.0, -d, 0.0), (0.0, d, 0.0)], [cfg.two_scale] * 2
        else:
            d = cfg.three_offset
            pos, scales = [(0.0, -d, 0.0), (0.0, 0.0, 0.0), (0.0, d, 0.0)], [cfg.three_scale] * 3
        for j, obj in enumerate(spec.objects):
            shape_id[i, j] = SHAPES.index(obj.shape)
            colour_id[i, j] = COLOURS.index(obj.colour)
            centre[i, j] = torch.tensor(pos[j])
            yaw[i, j] = yaws[i, j]
            scale[i, j] = scales[j] * jitter[i, j]
    return SceneBatch(shape_id, colour_id, centre, yaw, scale)


def object_multi_hot(specs: list[SceneSpec]) -> Tensor:
    """[B, 16] 1 where the object (shape, colour) is in the scene: the judge's set label."""
    out = torch.zeros(len(specs), len(SHAPES) * len(COLOURS))
    for i, spec in enumerate(specs):
        for o in spec.objects:
            out[i, o.index] = 1.0
    return out
