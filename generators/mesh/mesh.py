"""A triangle mesh with vertex colours or a texture, as torch tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import Tensor

from generators.errors import UserError


@dataclass
class Mesh:
    """Triangles with optional colours.

    vertices       [V, 3] float32 positions
    faces          [F, 3] int64 vertex indices
    vertex_colors  [V, 3] float32 in [0, 1], or None
    uv             [F, 3, 2] float32 texture coordinates per face corner (OBJ convention: v up), or None
    texture        [Ht, Wt, 3] float32 in [0, 1] (row 0 = top of the image), or None
    Colour precedence when drawn: texture, then vertex colours, then white (T3Bench's base colour).
    """

    vertices: Tensor
    faces: Tensor
    vertex_colors: Optional[Tensor] = None
    uv: Optional[Tensor] = None
    texture: Optional[Tensor] = None

    def __post_init__(self):
        v, f = self.vertices, self.faces
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
            raise UserError(f"a mesh needs vertices [V, 3] and faces [F, 3], got {tuple(v.shape)} and {tuple(f.shape)}")
        if len(f) and (int(f.min()) < 0 or int(f.max()) >= len(v)):
            raise UserError(f"mesh faces index vertices outside 0..{len(v) - 1}")
        if self.vertex_colors is not None and self.vertex_colors.shape != v.shape:
            raise UserError(f"vertex colours {tuple(self.vertex_colors.shape)} do not match vertices {tuple(v.shape)}")
        if (self.uv is None) != (self.texture is None):
            raise UserError("a textured mesh needs both uv and texture")
        if self.uv is not None and self.uv.shape != (len(f), 3, 2):
            raise UserError(f"uv must be [F, 3, 2], got {tuple(self.uv.shape)}")

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def to(self, device) -> "Mesh":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Mesh(move(self.vertices), move(self.faces), move(self.vertex_colors), move(self.uv), move(self.texture))

    def with_vertices(self, vertices: Tensor) -> "Mesh":
        return replace(self, vertices=vertices)
