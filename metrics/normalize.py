"""Put 3D Gaussians in T3Bench's evaluation frame.

T3Bench (render/meshrender.py) normalises the exported mesh before rendering:

    mesh.vertices -= mesh.vertices.mean(axis=0)     # centre = mean of the *vertices*
    mesh.vertices /= np.abs(mesh.vertices).max()    # -> [-1, 1]^3

We apply the same two steps to the Gaussians: the centre is the mean of the Gaussian *means*,
and positions and sizes are divided by the largest absolute coordinate of the centred means.
Differences from a mesh, to keep in mind when comparing numbers:
  * the mean of the Gaussian centres weights regions by how many Gaussians they hold (dense
    regions and floaters pull the centre), as the mesh vertex mean weights regions by vertex
    density; the two centres of one object are not the same point;
  * the bound uses the centres only: a Gaussian's extent (its scale) can reach slightly past
    [-1, 1]^3, where a mesh's vertices are its extent;
  * transparent Gaussians (low opacity) count like opaque ones, as T3Bench counts every vertex.
"""

from __future__ import annotations

import math

import torch

from generators.errors import UserError
from generators.gaussians.model import Gaussians


def normalize_gaussians(gaussians: Gaussians) -> tuple[Gaussians, dict]:
    """-> (a normalised copy, {"center": [3], "scale": s}) with means' = (means - center) / s."""
    means = gaussians.means.detach()  # [N, 3]
    if means.shape[0] == 0:
        raise UserError("cannot evaluate a run with no Gaussians")
    if not torch.isfinite(means).all():
        raise UserError("the Gaussians' positions contain NaN or infinity")
    center = means.mean(dim=0)  # [3]
    centred = means - center
    scale = float(centred.abs().max())
    if not scale > 0.0:
        raise UserError("all Gaussians sit at one point: the object has no extent to normalise")
    state = gaussians.state()
    state["means"] = centred.cpu() / scale
    # scales are stored as log standard deviations: dividing the size by s subtracts log(s)
    state["scales"] = state["scales"] - math.log(scale)
    out = Gaussians.from_state(state).to(gaussians.device)
    out.requires_grad_(False)
    return out, {"center": [float(c) for c in center], "scale": scale}


def normalize_mesh(mesh) -> tuple:
    """T3Bench's own normalisation of a mesh (render/meshrender.py): subtract the mean of the
    vertices, divide by the largest absolute coordinate. -> (normalised copy, {"center", "scale"})."""
    v = mesh.vertices.detach().double()
    if v.shape[0] == 0 or not torch.isfinite(v).all():
        raise UserError("cannot evaluate a mesh with no vertices, or with NaN / infinity in them")
    center = v.mean(dim=0)
    centred = v - center
    scale = float(centred.abs().max())
    if not scale > 0.0:
        raise UserError("all mesh vertices sit at one point: nothing to normalise")
    return mesh.with_vertices((centred / scale).float()), {"center": [float(c) for c in center], "scale": scale}
