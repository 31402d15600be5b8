"""The interpenetration penalty of SMPLify-X: conic 3D distance fields on colliding triangle pairs.

For a colliding pair, each triangle ("receiver") defines a cone: its apex axis is the unit normal n
through the circumcentre c, its base radius the circumradius r, its height sigma. A vertex v of the other
triangle ("intruder") at signed height d = (v - c).n and radial distance rho from the axis has the
normalised radius a = rho / (r (1 - d / sigma)) and lies in the field when a < 1. The field is
Phi = (1 - a) psi(d), with psi linear behind the triangle (d <= -sigma: -d + 1 - sigma), a quadratic
blend for -sigma < d < sigma (or < 0 when outside points are not penalised), and zero beyond. The
penalty is the sum over both directions of every pair of |Phi|^exponent over the intruder's corners
(Tzionas et al. 2016 "Capturing Hands in Action"; SMPLify-X Sec. 3.3; torch-mesh-isect's
DistanceFieldPenetrationLoss).

Exponent: the paper's form ||-Psi n||^2 is exponent 2 (our default). torch-mesh-isect's vectorised code
squares the field twice more, i.e. exponent 4; pass `exponent=4` to reproduce it. With unit normals the
point-to-plane variant has the same value, so `point2plane` only exists for configuration compatibility.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .parts import DEFAULT_IGNORED_PAIRS, PartFilter
from .search import Collisions, DegenerateMeshError, SearchTree, face_centres, find_collisions, gather_triangles

__all__ = ["CollisionSettings", "conic_penalty", "CollisionTerm"]


@dataclass
class CollisionSettings:
    """Parameters of the interpenetration term; defaults are SMPLify-X's cfg_files/fit_smplx.yaml."""

    sigma: float = 1e-4  # cone height in metres (`df_cone_height`; the CLI default of SMPLify-X is 0.5)
    penalize_outside: bool = True  # also penalise vertices just in front of the receiver (fit_smplx.yaml)
    max_collisions: int = 128  # colliding pairs kept per triangle (fit_smplx.yaml; the CLI default is 8)
    point2plane: bool = False  # same value as the default with unit normals; kept for config files
    exponent: int = 2  # paper form; torch-mesh-isect's vectorised code behaves as 4
    linear_max: float = 1000.0  # psi is zero beyond this depth (torch-mesh-isect's linear_max)


def _safe_norm(x: Tensor, eps: float = 1e-12) -> Tensor:
    return (x.square().sum(-1) + eps).sqrt()


def _cone_field(receiver: Tensor, intruder: Tensor, s: CollisionSettings) -> Tensor:
    """Phi of receiver triangles' cones at intruder corners. receiver, intruder: (P, 3, 3) -> (P, 3)."""
    p0 = receiver[:, 0]
    u, v = receiver[:, 1] - p0, receiver[:, 2] - p0
    w = torch.linalg.cross(u, v, dim=-1)
    w2 = w.square().sum(-1, keepdim=True) + 1e-20
    centre = p0 + (u.square().sum(-1, keepdim=True) * torch.linalg.cross(v, w, dim=-1)
                   + v.square().sum(-1, keepdim=True) * torch.linalg.cross(w, u, dim=-1)) / (2 * w2)
    radius = _safe_norm(centre - p0)[:, None]  # (P, 1)
    normal = w / w2.sqrt()
    rel = intruder - centre[:, None]  # (P, 3, 3)
    d = (rel * normal[:, None]).sum(-1)  # (P, 3) signed height
    radial = _safe_norm(rel - d[..., None] * normal[:, None])
    cone_radius = radius - radius * d / s.sigma + 1e-6  # <= 0 beyond the apex (d >= sigma): no field
    a = radial / torch.where(cone_radius > 0, cone_radius, torch.ones_like(cone_radius))  # no inf, no NaN grads
    sigma = s.sigma
    linear = -d + 1 - sigma
    quadratic = -(1 - 2 * sigma) / (4 * sigma**2) * d.square() - d / (2 * sigma) + 0.25 * (3 - 2 * sigma)
    upper = sigma if s.penalize_outside else 0.0
    psi = torch.where((d <= -sigma) & (d > -s.linear_max), linear, torch.zeros_like(d))
    psi = torch.where((d > -sigma) & (d < upper), quadratic, psi)
    inside = (a < 1) & (cone_radius > 0)
    return torch.where(inside, (1 - a) * psi, torch.zeros_like(d))


def conic_penalty(vertices: Tensor, faces: Tensor, collisions: Collisions,
                  settings: CollisionSettings | None = None) -> Tensor:
    """(B,) the distance-field penalty of each mesh, differentiable in `vertices` (B, V, 3).

    faces: (F, 3); collisions: the intersecting pairs (from `find_collisions`). Both triangles of a pair
    act as receiver in turn. Zero for a mesh without collisions.
    """
    s = settings or CollisionSettings()
    B = vertices.shape[0]
    out = vertices.new_zeros(B)
    if len(collisions) == 0:
        return out + 0 * vertices.sum()  # keeps the graph (and a zero gradient) for the caller
    faces = faces.to(device=vertices.device, dtype=torch.long)
    b = collisions.batch
    t1 = gather_triangles(vertices, faces, b, collisions.faces[:, 0])  # (P, 3, 3)
    t2 = gather_triangles(vertices, faces, b, collisions.faces[:, 1])
    phi = torch.cat([_cone_field(t1, t2, s), _cone_field(t2, t1, s)], 1)  # (P, 6)
    per_pair = whole_power(phi.abs(), s.exponent).sum(1)
    return out.index_add(0, b, per_pair)


def whole_power(x: Tensor, n: int) -> Tensor:
    """x ** n for a whole n >= 1, by repeated squaring. torch's pow with an exponent above 3 rounds an element
    by its place in the tensor on the CPU (as atan2 does: models/lbs.py), and the pairs of every mesh of a batch
    share one tensor here, so a person's penalty would depend on its batch mates; products do not."""
    result, base = None, x
    while True:
        if n & 1:
            result = base if result is None else result * base
        n >>= 1
        if not n:
            return result
        base = base * base


class CollisionTerm:
    """Search + penalty for one model's mesh, without state: call with vertices (B, V, 3) -> (penalty (B,),
    number of colliding pairs (B,)). The fitter times the calls itself (StageReport.collision_seconds)."""

    def __init__(self, faces: Tensor, part_filter: PartFilter | None, settings: CollisionSettings | None = None,
                 reference: Tensor | None = None):
        """reference (V, 3): a typical pose of the mesh (the rest pose) to lay out the search tree once
        (search.SearchTree); None: each search orders the faces anew (the same pairs, more work)."""
        self.faces = faces.long()
        self.part_filter = part_filter
        self.settings = settings or CollisionSettings()
        pf = part_filter
        self.tree = None if reference is None else SearchTree.build(
            face_centres(reference.detach(), self.faces), pf.face_part if pf else None, pf.allowed if pf else None)

    @classmethod
    def for_model(cls, model, settings: CollisionSettings | None = None,
                  ignored_pairs=DEFAULT_IGNORED_PAIRS) -> "CollisionTerm":
        return cls(model.faces_tensor, PartFilter.for_model(model, ignored_pairs), settings, model.v_template)

    def search(self, vertices: Tensor) -> Collisions:
        pf = self.part_filter
        return find_collisions(vertices.detach(), self.faces, pf.face_part if pf else None,
                               pf.allowed if pf else None, self.settings.max_collisions, self.tree)

    def __call__(self, vertices: Tensor) -> tuple[Tensor, Tensor]:
        loss, found = self.penalty(vertices)
        return loss, found.counts(vertices.shape[0])

    def find(self, vertices: Tensor) -> tuple[Collisions, Tensor | None]:
        """Every colliding pair of `vertices` (B, V, 3), and (B,) bool which meshes are degenerate (None where
        none is): those the search cannot handle (a wild line-search trial collapsed to a point or a line)
        are searched one by one, and the degenerate ones get no pairs."""
        try:
            return self.search(vertices), None
        except DegenerateMeshError:  # rare: find the culprits one by one
            return self._search_each(vertices)

    def penalty(self, vertices: Tensor, pairs: Collisions | None = None, faces: Tensor | None = None,
                degenerate: Tensor | None = None) -> tuple[Tensor, Collisions]:
        """(B,) the penalty of `vertices` (B, V, 3) and the pairs it was measured on: `pairs` where given
        (no search: the penalty is then continuous in the vertices, which a line search needs; see
        fitting/fitter.py), else every colliding pair found now. faces: the faces as rows of `vertices` when
        these are some of the mesh's vertices (BodyModel.vertex_subset; every corner of `pairs` among them),
        None: the mesh's own. degenerate (B,): meshes whose penalty is infinite (from `find`)."""
        if pairs is None:
            pairs, degenerate = self.find(vertices)
        loss = conic_penalty(vertices, self.faces if faces is None else faces, pairs, self.settings)
        if degenerate is not None:  # an infinite loss: the optimiser rejects such a trial point
            loss = torch.where(degenerate, torch.full_like(loss, float("inf")), loss)
        return loss, pairs

    def _search_each(self, vertices: Tensor) -> tuple[Collisions, Tensor]:
        parts, degenerate = [], torch.zeros(vertices.shape[0], dtype=torch.bool, device=vertices.device)
        for b in range(vertices.shape[0]):
            try:
                one = self.search(vertices[b : b + 1])
            except DegenerateMeshError:
                degenerate[b] = True
                continue
            parts.append(Collisions(torch.full_like(one.batch, b), one.faces))
        if not parts:
            return Collisions.empty(vertices.device), degenerate
        return Collisions(torch.cat([p.batch for p in parts]), torch.cat([p.faces for p in parts])), degenerate
