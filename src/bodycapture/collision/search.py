"""Self-intersection search: which triangles of a posed mesh intersect each other (batched, any device).

SMPLify-X finds colliding triangle pairs with a CUDA-only BVH (Karras 2012: Morton codes, radix tree)
followed by an exact triangle-triangle test [torch-mesh-isect]. Ours is a BVH too, built and traversed
with a few sort, gather and compaction operations per tree level, so the same code runs on the CPU and
the GPU:

1. triangles are grouped by body part (when a part filter is given), each part's in the Morton order of
   their box centres, and laid on the leaves of a complete binary tree with every part beginning on a
   subtree boundary (`SearchTree`: laid out once per model, from the rest pose; a part moves nearly
   rigidly, so its subtree stays tight in any pose); each search computes the node boxes bottom-up by
   pairwise min / max;
2. the tree is traversed against itself level by level: the frontier holds node pairs whose boxes
   overlap, and each level replaces them by their overlapping child pairs;
3. with a part filter, every node also carries a bitmask of the parts below it and of the parts those
   may collide with, so node pairs that can only hold ignored part pairs are dropped early (this is what
   makes the search fast: most overlapping neighbours are on the same or adjacent parts);
4. the leaf pairs go through the shared-vertex and part filters, then the exact test: plane-side
   rejection (Moeller 1997) and a separating-axis test on 17 axes.

Triangles are closed sets: touching counts as intersecting. Pairs that share a vertex are skipped.
A uniform grid was tried first and measured slower (94 ms against 7 ms on the open model at rest; see
docs/benchmarks.md, Collision term speed): the open model's triangle sizes span 10x, so no cell size suits it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import BodyCaptureError

__all__ = [
    "Collisions", "DegenerateMeshError", "SearchTree", "all_pairs_collisions", "face_centres", "find_collisions",
    "gather_triangles", "morton_codes", "triangles_intersect",
]  # fmt: skip


class DegenerateMeshError(BodyCaptureError):
    """The search met a mesh whose triangles nearly all overlap (collapsed to a point or a line)."""


_MAX_PAIRS_PER_FACE = 16  # a posed body has under 2 per triangle at the busiest tree level


@dataclass
class Collisions:
    """Intersecting triangle pairs of a batch of meshes.

    batch: (P,) which mesh; faces: (P, 2) the two face indices, first < second.
    Sorted by (batch, first, second).
    """

    batch: Tensor
    faces: Tensor

    @classmethod
    def empty(cls, device=None) -> "Collisions":
        none = torch.zeros(0, dtype=torch.long, device=device)
        return cls(none, none.reshape(0, 2))

    def __len__(self) -> int:
        return int(self.batch.shape[0])

    def counts(self, batch_size: int) -> Tensor:
        """(B,) number of intersecting pairs per mesh."""
        return torch.bincount(self.batch, minlength=batch_size)

    def select(self, rows: Tensor, batch_size: int) -> "Collisions":
        """The pairs of meshes `rows` (R,) (increasing), renumbered 0..R-1; batch_size: meshes in self."""
        new_index = torch.full((batch_size,), -1, dtype=torch.long, device=self.batch.device)
        new_index[rows] = torch.arange(len(rows), device=self.batch.device)
        b = new_index[self.batch]
        keep = b >= 0
        return Collisions(b[keep], self.faces[keep])

    def replace(self, rows: Tensor, found: "Collisions") -> "Collisions":
        """These pairs with those of meshes `rows` (R,) replaced by `found` (numbered 0..R-1 as `select`
        gives them); still sorted."""
        rows = rows.to(self.batch.device)
        kept = ~torch.isin(self.batch, rows)
        batch = torch.cat([self.batch[kept], rows[found.batch]])
        faces = torch.cat([self.faces[kept], found.faces])
        order = torch.argsort(batch, stable=True)  # each mesh's pairs stay sorted among themselves
        return Collisions(batch[order], faces[order])

    def as_set(self) -> set[tuple[int, int, int]]:
        """{(b, i, j)}: handy for comparisons."""
        rows = torch.cat([self.batch[:, None], self.faces], 1).tolist()
        return {tuple(r) for r in rows}


def _cross(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.cross(a, b, dim=-1)


def triangles_intersect(a: Tensor, b: Tensor) -> Tensor:
    """Whether closed triangles a[k] and b[k] intersect.

    a, b: (P, 3, 3) triangles (corner, xyz). Returns (P,) bool. Exact for coordinates whose products are
    exact in the dtype (e.g. small integers); otherwise as good as the floating point allows.
    """
    result = torch.zeros(a.shape[0], dtype=torch.bool, device=a.device)
    if a.shape[0] == 0:
        return result
    # plane-side rejection: all corners of one triangle strictly on one side of the other's plane
    na = _cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0])
    nb = _cross(b[:, 1] - b[:, 0], b[:, 2] - b[:, 0])
    db = ((b - a[:, :1]) * na[:, None]).sum(-1)  # (P, 3)
    da = ((a - b[:, :1]) * nb[:, None]).sum(-1)
    apart = ((db > 0).all(1) | (db < 0).all(1) | (da > 0).all(1) | (da < 0).all(1))
    keep = torch.nonzero(~apart).flatten()
    if keep.numel() == 0:
        return result
    a, b, na, nb = a[keep], b[keep], na[keep], nb[keep]
    # separating axes: both normals, the 9 edge-edge cross products, and the 6 in-plane edge normals
    # (the last matter only for coplanar triangles; extra axes never cause a false "apart")
    ea = a.roll(-1, 1) - a  # (P, 3, 3) edges
    eb = b.roll(-1, 1) - b
    axes = torch.cat([
        na[:, None], nb[:, None],
        _cross(ea[:, :, None], eb[:, None, :]).flatten(1, 2),
        _cross(na[:, None], ea), _cross(nb[:, None], eb),
    ], 1)  # (P, 17, 3)
    pa = torch.einsum("pkc,pvc->pkv", axes, a)  # (P, 17, 3)
    pb = torch.einsum("pkc,pvc->pkv", axes, b)
    separated = (pa.amax(2) < pb.amin(2)) | (pb.amax(2) < pa.amin(2))
    result[keep] = ~separated.any(1)
    return result


def face_centres(vertices: Tensor, faces: Tensor) -> Tensor:
    """(F, 3) the centres of the faces' bounding boxes; vertices (V, 3), faces (F, 3)."""
    corners = vertices[faces.long()]  # (F, 3, 3)
    return (corners.amin(1) + corners.amax(1)) / 2


def gather_triangles(vertices: Tensor, faces: Tensor, batch: Tensor, face_ids: Tensor) -> Tensor:
    """(P, 3, 3) corners of faces[face_ids[k]] of mesh batch[k]; vertices (B, V, 3) (differentiable)."""
    index = batch[:, None] * vertices.shape[1] + faces[face_ids]  # (P, 3) rows of the flattened vertices
    return vertices.reshape(-1, 3).index_select(0, index.flatten()).view(-1, 3, 3)


def _shared_vertex(fa: Tensor, fb: Tensor) -> Tensor:
    """(P,) whether faces fa[k] and fb[k] (P, 3) share a vertex index."""
    return (fa[:, :, None] == fb[:, None, :]).flatten(1).any(1)


def _pair_filter(faces: Tensor, i: Tensor, j: Tensor, face_part: Tensor | None, allowed: Tensor | None) -> Tensor:
    keep = ~_shared_vertex(faces[i], faces[j])
    if face_part is not None:
        keep &= allowed[face_part[i], face_part[j]]
    return keep


def _cap_per_face(batch: Tensor, first: Tensor, limit: int) -> Tensor:
    """Mask keeping at most `limit` pairs per (batch, first face); input sorted by (batch, first)."""
    key = batch * (first.max() + 1 if first.numel() else 1) + first
    _, counts = torch.unique_consecutive(key, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(key.shape[0], device=key.device) - starts.repeat_interleave(counts)
    return rank < limit


def _sorted_result(b: Tensor, i: Tensor, j: Tensor, num_faces: int, max_per_face: int | None) -> Collisions:
    key = (b * num_faces + i) * num_faces + j
    key, order = torch.sort(key)
    b, i, j = b[order], i[order], j[order]
    if max_per_face is not None and b.numel():
        keep = _cap_per_face(b, i, max_per_face)
        b, i, j = b[keep], i[keep], j[keep]
    return Collisions(b, torch.stack([i, j], 1))


def _spread_bits(x: Tensor) -> Tensor:
    """10-bit integers -> their bits spread to every third position (for 30-bit Morton codes)."""
    x = (x | (x << 16)) & 0x030000FF
    x = (x | (x << 8)) & 0x0300F00F
    x = (x | (x << 4)) & 0x030C30C3
    return (x | (x << 2)) & 0x09249249


def morton_codes(points: Tensor, bits: int = 10) -> Tensor:
    """(B, N) Morton codes (int64, 3 x `bits` <= 30 bits) of points (B, N, 3), quantised in each item's box."""
    lo = points.amin(1, keepdim=True)
    size = (points.amax(1, keepdim=True) - lo).clamp_min(1e-12)
    top = (1 << bits) - 1
    q = ((points - lo) / size * top).clamp(0, top).long()
    return _spread_bits(q[..., 0]) | (_spread_bits(q[..., 1]) << 1) | (_spread_bits(q[..., 2]) << 2)


def _or_levels(leaf: Tensor, depth: int) -> list[Tensor]:
    """Bitwise-or reductions of (B, 2**depth) leaf masks: [root level, ..., leaf level], each flattened."""
    levels = [leaf]
    for _ in range(depth):
        pairs = levels[-1].view(leaf.shape[0], -1, 2)
        levels.append(pairs[..., 0] | pairs[..., 1])
    return [x.reshape(-1) for x in reversed(levels)]


def _part_masks(leaf_part: Tensor, depth: int, allowed_parts: Tensor) -> tuple[list, list]:
    """Per tree level, for every node: the parts below it and the parts those may collide with (bitmasks).

    leaf_part: (B, N) part of each leaf in tree order, -1 for an empty leaf. Node ids: b * 2**level + node."""
    dev = leaf_part.device
    K = allowed_parts.shape[0]
    bits = torch.ones(K + 1, dtype=torch.long, device=dev) << torch.arange(K + 1, device=dev)
    bits[K] = 0  # index -1: an empty leaf holds no part
    may_hit = torch.cat([(allowed_parts.to(dev).long() * bits[:K]).sum(1), bits.new_zeros(1)])  # (K + 1,)
    return _or_levels(bits[leaf_part], depth), _or_levels(may_hit[leaf_part], depth)


def _aligned_slots(part_sorted: Tensor, N: int) -> Tensor:
    """(F,) the leaf of each face in tree order (faces sorted by part) such that every part's faces begin on a
    boundary of 2^s leaves, for the largest s that still fits N leaves (empty leaves fill each part's last
    subtree).

    Without this, the node holding the last faces of one part and the first of the next spans both parts'
    places on the body (the right eye and the left hand's index finger are neighbours in part order): its box
    overlaps thousands of others, at every level, and made most of the search's work (a posed open model:
    31,000 node pairs at the widest level, 41 allowed leaf pairs overlapping). Aligned, no node of 2^s leaves
    or fewer holds two parts."""
    F = part_sorted.shape[0]
    _, counts = torch.unique_consecutive(part_sorted, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # where each part begins unaligned
    rank = torch.arange(F, device=part_sorted.device) - first.repeat_interleave(counts)
    for s in range(N.bit_length() - 1, -1, -1):
        padded = (counts + (1 << s) - 1) >> s << s
        if int(padded.sum()) <= N:
            start = torch.cumsum(padded, 0) - padded
            return start.repeat_interleave(counts) + rank
    return torch.arange(F, device=part_sorted.device)  # unreachable: s = 0 pads nothing


@dataclass
class SearchTree:
    """The fixed layout of a mesh's triangles in the search tree: which face sits at which leaf, and for
    every node the parts below it and the parts those may collide with. Built once per mesh (the faces, their
    parts and the order do not change with the pose); each search then only recomputes the boxes.

    The leaf order: each part's faces sorted by the Morton code of their box centres in a reference pose (the
    rest pose), each part beginning on a subtree boundary (`_aligned_slots`): a part moves nearly rigidly, so
    faces near each other at rest stay near each other posed, and the subtrees stay tight (a tree built once
    for the whole body was measured slower: the limbs' subtrees mix when the limbs move; with one subtree per
    part they do not, and the per-search sort is saved).

    depth: levels below the root (N = 2^depth leaves); face_at: (N,) the face at each leaf, -1 for an empty
    one; parts_below, hits_below: per level l, (2^l,) bitmasks per node (None without a part filter)."""

    depth: int
    face_at: Tensor
    parts_below: list[Tensor] | None
    hits_below: list[Tensor] | None

    @classmethod
    def build(cls, centres: Tensor, face_part: Tensor | None = None,
              allowed_parts: Tensor | None = None) -> "SearchTree":
        """centres (F, 3): the centres of the faces' boxes in the reference pose (`face_centres`); face_part (F,)
        and allowed_parts (K, K) as in `find_collisions` (None: no filter, one Morton order for all faces)."""
        F = centres.shape[0]
        depth = max(1, (F - 1).bit_length())
        N = 1 << depth
        prune = face_part is not None and allowed_parts.shape[0] <= 63
        if prune:  # group each part's faces: subtrees then hold one part, and same-part pairs go at once
            part = face_part.to(centres.device).long()
            order = torch.argsort(((part << 24) | morton_codes(centres[None], bits=8)[0]).int())
            slot = _aligned_slots(part[order], N)
        else:
            order = torch.argsort(morton_codes(centres[None])[0].int())
            slot = torch.arange(F, device=centres.device)
        face_at = order.new_full((N,), -1)
        face_at[slot] = order
        if not prune:
            return cls(depth, face_at, None, None)
        leaf_part = part.new_full((N,), -1)
        leaf_part[slot] = part[order]
        parts_below, hits_below = _part_masks(leaf_part[None], depth, allowed_parts)
        return cls(depth, face_at, parts_below, hits_below)

    def to(self, device) -> "SearchTree":
        """This layout on `device` (itself when already there)."""
        if self.face_at.device == torch.device(device):
            return self
        move = (lambda masks: None if masks is None else [m.to(device) for m in masks])  # noqa: E731
        return SearchTree(self.depth, self.face_at.to(device), move(self.parts_below), move(self.hits_below))


@torch.no_grad()
def find_collisions(
    vertices: Tensor,
    faces: Tensor,
    face_part: Tensor | None = None,
    allowed_parts: Tensor | None = None,
    max_per_face: int | None = None,
    tree: SearchTree | None = None,
) -> Collisions:
    """Intersecting triangle pairs of each mesh of a batch.

    vertices: (B, V, 3); faces: (F, 3) long, shared by the batch.
    face_part: (F,) long part id of each face, with allowed_parts (K, K) bool: a pair (i, j) is only
        reported when allowed_parts[part[i], part[j]] (see `parts.PartFilter`). None: every part pair.
    max_per_face: at most this many pairs per first face (SMPLify-X's `max_collisions`); None: all.
    tree: `SearchTree.build(face_centres(rest vertices, faces), face_part, allowed_parts)`, made once for a
        mesh that is searched many times (the same pairs, less work); None: the order comes from these meshes'
        own boxes.
    Faces with a non-finite corner are ignored. Pairs sharing a vertex are never reported.
    """
    B, F = vertices.shape[0], faces.shape[0]
    dev = vertices.device
    faces = faces.to(device=dev, dtype=torch.long)
    if F < 2 or B == 0:
        return Collisions.empty(dev)
    all_finite = bool(torch.isfinite(vertices).all())
    corners = [vertices.index_select(1, faces[:, k]) for k in range(3)]  # 3 x (B, F, 3)
    lo = torch.minimum(torch.minimum(corners[0], corners[1]), corners[2])  # (B, F, 3)
    hi = torch.maximum(torch.maximum(corners[0], corners[1]), corners[2])
    finite = None if all_finite else (torch.isfinite(lo) & torch.isfinite(hi)).all(-1, keepdim=True)  # (B, F, 1)
    # a box is stored as (min, -max): the box of two boxes is then one elementwise minimum, and two
    # boxes overlap when min_a + (-max_b) <= 0 and min_b + (-max_a) <= 0 on every axis
    box = torch.cat([lo, -hi], -1)
    if not all_finite:
        box = box.masked_fill(~finite, float("inf"))
    if tree is None:  # a layout for these meshes: the first one's boxes set the order (any order is exact)
        centres = (lo[0] + hi[0]) / 2
        tree = SearchTree.build(centres if all_finite else torch.where(finite[0], centres, 0.0), face_part,
                                allowed_parts)
    tree = tree.to(dev)
    depth, N = tree.depth, 1 << tree.depth
    leaf_face = torch.where(tree.face_at < 0, F, tree.face_at)  # an empty leaf reads the infinite box F
    box = torch.cat([box, box.new_full((B, 1, 6), float("inf"))], 1)
    boxes = [box.index_select(1, leaf_face)]  # (B, N, 6) in tree order
    for _ in range(depth):
        pairs = boxes[-1].view(B, -1, 2, 6)
        boxes.append(torch.minimum(pairs[:, :, 0], pairs[:, :, 1]))
    boxes = [x.reshape(-1, 6) for x in reversed(boxes)]  # boxes[l]: level l, node id b * 2**l + node
    prune = tree.parts_below is not None

    a = torch.arange(B, device=dev)  # frontier of node pairs (a <= b), starting at the roots
    b = a
    child_a = torch.tensor([0, 0, 1, 1], device=dev)
    child_b = torch.tensor([0, 1, 0, 1], device=dev)
    for level in range(1, depth + 1):
        ca = (a[:, None] * 2 + child_a).flatten()  # the four child pairs of every frontier pair
        cb = (b[:, None] * 2 + child_b).flatten()
        keep = ca < cb if level == depth else ca <= cb  # (2a+1, 2a) repeats (2a, 2a+1); leaves never self-pair
        if prune:  # the cheap test first: can any part below ca collide with any part below cb?
            node = (1 << level) - 1  # node ids within a mesh (the masks are the same for every mesh)
            keep &= (tree.hits_below[level].index_select(0, ca & node)
                     & tree.parts_below[level].index_select(0, cb & node)) != 0
        idx = torch.nonzero(keep).flatten()
        ca, cb = ca.index_select(0, idx), cb.index_select(0, idx)
        ba, bb = boxes[level].index_select(0, ca), boxes[level].index_select(0, cb)  # faster than [] on CPU
        overlap = torch.maximum(ba[:, :3] + bb[:, 3:], bb[:, :3] + ba[:, 3:]).amax(1) <= 0
        idx = torch.nonzero(overlap).flatten()
        a, b = ca.index_select(0, idx), cb.index_select(0, idx)
        if a.numel() > max(_MAX_PAIRS_PER_FACE * F * B, 1 << 18):  # small soups may be dense
            raise DegenerateMeshError(f"collision search: over {_MAX_PAIRS_PER_FACE} overlapping box pairs per "
                                   "triangle; the mesh is degenerate (collapsed to a point or a line?)")
    batch = a // N
    fi = tree.face_at.index_select(0, a % N)
    fj = tree.face_at.index_select(0, b % N)
    keep = torch.nonzero(_pair_filter(faces, fi, fj, face_part, allowed_parts)).flatten()
    batch, fi, fj = batch[keep], fi[keep], fj[keep]
    tri_i, tri_j = gather_triangles(vertices, faces, batch, fi), gather_triangles(vertices, faces, batch, fj)
    hit = torch.nonzero(triangles_intersect(tri_i, tri_j)).flatten()
    batch, fi, fj = batch[hit], fi[hit], fj[hit]
    return _sorted_result(batch, torch.minimum(fi, fj), torch.maximum(fi, fj), F, max_per_face)


@torch.no_grad()
def all_pairs_collisions(
    vertices: Tensor,
    faces: Tensor,
    face_part: Tensor | None = None,
    allowed_parts: Tensor | None = None,
    chunk: int = 2_000_000,
) -> Collisions:
    """The O(F^2) reference: every pair through the exact test (for tests and small meshes).

    Same arguments and result as `find_collisions` (without the per-face cap).
    """
    B, F = vertices.shape[0], faces.shape[0]
    dev = vertices.device
    faces = faces.to(device=dev, dtype=torch.long)
    i, j = torch.triu_indices(F, F, offset=1, device=dev)
    keep = _pair_filter(faces, i, j, face_part, allowed_parts)
    i, j = i[keep], j[keep]
    tri = vertices[:, faces]
    finite = torch.isfinite(tri).flatten(2).all(-1)  # (B, F)
    lo, hi = tri.amin(2), tri.amax(2)
    out_b, out_i, out_j = [], [], []
    for b in range(B):  # reference implementation: clarity over speed
        for s in range(0, i.numel(), chunk):
            ii, jj = i[s:s + chunk], j[s:s + chunk]
            ok = finite[b, ii] & finite[b, jj]
            ii, jj = ii[ok], jj[ok]
            ok = ((lo[b, ii] <= hi[b, jj]) & (lo[b, jj] <= hi[b, ii])).all(1)  # boxes meet: a necessary condition
            ii, jj = ii[ok], jj[ok]
            hit = triangles_intersect(tri[b, ii], tri[b, jj])
            out_b.append(torch.full((int(hit.sum()),), b, dtype=torch.long, device=dev))
            out_i.append(ii[hit])
            out_j.append(jj[hit])
    if not out_b:
        return Collisions.empty(dev)
    return _sorted_result(torch.cat(out_b), torch.cat(out_i), torch.cat(out_j), F, None)
