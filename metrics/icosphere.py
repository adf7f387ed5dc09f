"""Subdivided icosahedron (geodesic sphere) and T3Bench's regional averaging on it.

T3Bench places its cameras on `trimesh.creation.icosphere(subdivisions, radius)`: start from
the regular icosahedron (vertices: cyclic permutations of (0, +-1, +-phi), on the unit sphere),
split every triangle into 4 at the edge midpoints, push every vertex back onto the unit sphere
after each split, and finally scale by the radius. This is our own construction of the same
vertex set (the vertex *order* differs from trimesh's, which no T3Bench number depends on).

    ico = icosphere(2, radius=2.2)   # 162 vertices: 12 with 5 neighbours, 150 with 6
    smoothed = regional_average(scores, ico.neighbours, rounds=3)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

PHI = (1.0 + math.sqrt(5.0)) / 2.0


@dataclass(frozen=True)
class Icosphere:
    vertices: Tensor  # [V, 3] float64, on the sphere of `radius`
    faces: Tensor  # [F, 3] long, counter-clockwise seen from outside
    neighbours: tuple[tuple[int, ...], ...]  # per vertex, the sorted indices of its 1-ring
    radius: float

    def __len__(self) -> int:
        return self.vertices.shape[0]


def icosahedron() -> tuple[Tensor, Tensor]:
    """The regular icosahedron on the unit sphere: vertices [12, 3] float64, faces [20, 3]."""
    points = []
    for a, b in itertools.product((-1.0, 1.0), repeat=2):
        # the three cyclic permutations of (0, a, b * phi)
        points += [(0.0, a, b * PHI), (a, b * PHI, 0.0), (b * PHI, 0.0, a)]
    verts = torch.tensor(points, dtype=torch.float64)
    verts = verts / verts.norm(dim=-1, keepdim=True)
    # edges join vertices at the minimal distance; faces are the triangles of edges
    dist = torch.cdist(verts, verts)
    edge_len = dist[dist > 1e-9].min()
    adjacent = (dist - edge_len).abs() < 1e-9
    faces = []
    for i, j, k in itertools.combinations(range(12), 3):
        if adjacent[i, j] and adjacent[j, k] and adjacent[i, k]:
            normal = torch.linalg.cross(verts[j] - verts[i], verts[k] - verts[i])
            faces.append((i, j, k) if float(normal @ verts[i]) > 0 else (i, k, j))
    return verts, torch.tensor(faces, dtype=torch.long)


def subdivide(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Split each face into 4 at its edge midpoints and project every vertex onto the unit sphere.

    vertices [V, 3], faces [F, 3] -> vertices [V + E, 3], faces [4F, 3] (E = number of edges).
    """
    verts = [v for v in vertices]
    midpoint: dict[tuple[int, int], int] = {}

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoint:
            midpoint[key] = len(verts)
            verts.append(0.5 * (vertices[a] + vertices[b]))
        return midpoint[key]

    new_faces = []
    for a, b, c in faces.tolist():
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        new_faces += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    out = torch.stack(verts)
    return out / out.norm(dim=-1, keepdim=True), torch.tensor(new_faces, dtype=torch.long)


def vertex_neighbours(num_vertices: int, faces: Tensor) -> tuple[tuple[int, ...], ...]:
    """The 1-ring of every vertex (the vertices sharing an edge with it), sorted."""
    ring: list[set[int]] = [set() for _ in range(num_vertices)]
    for a, b, c in faces.tolist():
        for u, v in ((a, b), (b, c), (c, a)):
            ring[u].add(v)
            ring[v].add(u)
    return tuple(tuple(sorted(r)) for r in ring)


def icosphere(subdivisions: int, radius: float = 1.0) -> Icosphere:
    """Geodesic sphere: 10 * 4^s + 2 vertices (s=0: 12, s=1: 42, s=2: 162)."""
    if subdivisions < 0:
        raise ValueError(f"subdivisions must be >= 0, got {subdivisions}")
    verts, faces = icosahedron()
    for _ in range(subdivisions):
        verts, faces = subdivide(verts, faces)
    return Icosphere(verts * radius, faces, vertex_neighbours(verts.shape[0], faces), float(radius))


def neighbour_matrix(neighbours: tuple[tuple[int, ...], ...] | list, dtype=torch.float64) -> Tensor:
    """Dense 0/1 adjacency [V, V] from 1-rings."""
    n = len(neighbours)
    adj = torch.zeros(n, n, dtype=dtype)
    for v, ring in enumerate(neighbours):
        if ring:
            adj[v, list(ring)] = 1.0
    return adj


def regional_average(scores: Tensor, neighbours, rounds: int = 3) -> Tensor:
    """T3Bench's smoothing: `rounds` times, s_v <- (s_v + sum_{u in N(v)} s_u) / (|N(v)| + 1).

    All vertices are updated from the previous round's values (a Jacobi step, as T3Bench builds
    a new dict each round). scores [V] -> [V] float64.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    if scores.ndim != 1 or scores.shape[0] != len(neighbours):
        raise ValueError(f"scores must be [V] with V = {len(neighbours)} vertices, got {tuple(scores.shape)}")
    adj = neighbour_matrix(neighbours)
    count = adj.sum(dim=1) + 1.0
    for _ in range(rounds):
        scores = (scores + adj @ scores) / count
    return scores
