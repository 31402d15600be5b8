"""Changing the resolution of a batch of posed meshes (for collision tests and benchmarks).

`subdivide` splits every triangle into four at its edge midpoints; `decimate` merges the vertices that
fall in one grid cell (vertex clustering, Rossignac & Borrel 1993) and drops the faces that collapse.
Both carry a per-face label (e.g. the body part) along.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["subdivide", "decimate"]


def subdivide(vertices: Tensor, faces: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each triangle -> 4. vertices (B, V, 3), faces (F, 3), labels (F,) -> (B, V + E, 3), (4F, 3), (4F,)."""
    F, V = faces.shape[0], vertices.shape[1]
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(1).values  # (3F, 2)
    unique, inverse = torch.unique(edges, dim=0, return_inverse=True)
    midpoints = (vertices[:, unique[:, 0]] + vertices[:, unique[:, 1]]) / 2
    m = (inverse + V).reshape(3, F).T  # (F, 3) new vertex on edges 01, 12, 20
    a, b, c = faces.T
    new_faces = torch.cat([
        torch.stack([a, m[:, 0], m[:, 2]], 1), torch.stack([m[:, 0], b, m[:, 1]], 1),
        torch.stack([m[:, 2], m[:, 1], c], 1), torch.stack([m[:, 0], m[:, 1], m[:, 2]], 1),
    ])  # fmt: skip
    return torch.cat([vertices, midpoints], 1), new_faces, labels.repeat(4)


def decimate(vertices: Tensor, faces: Tensor, labels: Tensor, cell: float) -> tuple[Tensor, Tensor, Tensor]:
    """Vertex clustering on a grid of `cell` (the first mesh's positions decide the clusters).

    vertices (B, V, 3), faces (F, 3), labels (F,) -> (B, V', 3) cluster means, (F', 3), (F',).
    """
    key = torch.floor(vertices[0] / cell).long()
    _, cluster = torch.unique(key, dim=0, return_inverse=True)
    n = int(cluster.max()) + 1
    count = torch.zeros(n, dtype=vertices.dtype, device=vertices.device).index_add_(
        0, cluster, torch.ones_like(cluster, dtype=vertices.dtype))
    merged = vertices.new_zeros(vertices.shape[0], n, 3).index_add_(1, cluster, vertices) / count[:, None]
    f = cluster[faces]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    return merged, f[ok], labels[ok]
