"""The body stages' objective as a set of named terms, each weighted per stage.

E(p) = data + body_pose + bending + shape + expression + hand_pose + jaw + collision + depth + world
(Pavlakos et al. 2019, eq. 1, with its code's weight conventions; `world` is ours: bone directions from
the detector's metric 3D landmarks). `TERMS` maps each name to a small function of one evaluation; a term
whose inputs are absent (a model without hands, no 3D landmarks) or that is switched off in a stage
(collision, world) returns None and is not computed.

Everything is per batch item (N,): N is every hypothesis of every person. `Targets.take(rows)` gives the
rows a partial evaluation needs (line searches evaluate only the items still searching).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property

import torch
from torch import Tensor

from ..collision import Collisions, CollisionTerm
from ..keypoints.layout import GROUPS
from ..keypoints.regressors import KeypointRegressor
from ..models.body_model import BodyModel, BodyOutput
from ..priors import PosePrior, bending_prior
from .camera import Camera
from .losses import bone_direction_term, data_term, group_weights, jaw_prior, l2
from .schedule import FitConfig, Stage

__all__ = ["Targets", "Objective", "Evaluation", "TERMS", "pca_hand_components"]


@dataclass
class Targets:
    """What each batch item is fitted to (N items).

    points (N, 135, 2) pixels; confidence (N, 135); image_height (N,); focal, center (N, 2) the camera;
    depth0 (N,) the similar-triangles depth that the depth term keeps the translation near; fixed_transl
    (N, 3) the translation when it is not optimised; world (N, 25, 3) metric 3D BODY_25 points (camera
    axes, any origin) and world_confidence (N, 25) (zeros where there are none); start_latent (N, L) the
    pose latent each item started from (anchored stages measure the pose prior from there)."""

    points: Tensor
    confidence: Tensor
    image_height: Tensor
    focal: Tensor
    center: Tensor
    depth0: Tensor
    fixed_transl: Tensor
    world: Tensor
    world_confidence: Tensor
    start_latent: Tensor

    def take(self, rows: Tensor | None) -> "Targets":
        """The items `rows` (R,) (all of them for None)."""
        if rows is None:
            return self
        return Targets(**{f.name: getattr(self, f.name).index_select(0, rows) for f in fields(self)})

    @property
    def camera(self) -> Camera:
        return Camera(self.focal, self.center)


@dataclass
class Evaluation:
    """One evaluation of the objective, shared by its terms: the optimised variables `p`, the model's
    parameters they give, the posed bodies (the whole mesh only where a term needs it), the stage and the
    targets of these items. `stats`, when
    given, collects what costly terms measure: 'collision_seconds' (added up), 'collisions' (the
    colliding pairs per item of this evaluation) and 'pairs' (those pairs, a Collisions). `pairs`: the
    colliding pairs the collision term is measured on (None: those found now)."""

    objective: "Objective"
    p: dict[str, Tensor]
    params: dict[str, Tensor]
    out: BodyOutput
    stage: Stage
    targets: Targets
    stats: dict | None
    regressor: KeypointRegressor  # the one matching `out` (the whole mesh or some of its vertices)
    pairs: Collisions | None = None
    faces: Tensor | None = None  # the mesh's faces as rows of out.vertices when it holds some vertices only
    degenerate: Tensor | None = None  # (N,) items whose mesh the collision search could not handle

    def terms(self) -> dict[str, Tensor]:
        """Every term of TERMS that applies, per item (N,)."""
        values = {name: term(self) for name, term in TERMS.items()}
        return {name: v for name, v in values.items() if v is not None}

    @cached_property
    def keypoints(self) -> Tensor:
        """(N, 135, 3) the model's keypoints in camera space, regressed once for every term that needs them."""
        return self.regressor(self.out)


def _data(e: Evaluation) -> Tensor:
    o, t, st = e.objective, e.targets, e.stage
    projected = t.camera.project(e.keypoints)
    w = t.confidence * o.group_weights(st.hand_joints, st.face_joints)
    return st.data**2 * data_term(projected, t.points, w, t.image_height, o.config.rho, o.config.robust_per_coordinate)


def _body_pose(e: Evaluation) -> Tensor:
    prior, z = e.objective.pose_prior, e.p["pose_latent"]
    if e.stage.anchor_pose:  # the prior moved so that its mean lies at each item's start (start.py)
        z = z - e.targets.start_latent + prior.init_latent(1, z.dtype, z.device)
    return e.stage.body_pose**2 * prior.penalty(z)


def _bending(e: Evaluation) -> Tensor:
    return e.stage.bending * bending_prior(e.params["body_pose"])


def _shape(e: Evaluation) -> Tensor:
    return e.stage.shape**2 * l2(e.p["betas"])


def _expression(e: Evaluation) -> Tensor | None:
    return e.stage.expression**2 * l2(e.p["expression"]) if "expression" in e.p else None


def _hand_pose(e: Evaluation) -> Tensor | None:
    hands = [h for h in ("left_hand_pose", "right_hand_pose") if h in e.p]
    if not hands:
        return None
    comps = e.objective.hand_components
    axis_angle = [e.p[h] @ comps[h] if h in comps else e.p[h] for h in hands]
    return e.stage.hand_pose**2 * sum(l2(h) for h in axis_angle)


def _jaw(e: Evaluation) -> Tensor | None:
    if "jaw_pose" not in e.p:
        return None
    return jaw_prior(e.p["jaw_pose"], torch.tensor(e.stage.jaw, dtype=e.p["jaw_pose"].dtype, device=e.p["jaw_pose"].device))


def _collision(e: Evaluation) -> Tensor | None:
    term = e.objective.collision
    if term is None or e.stage.collision <= 0:
        return None
    start = time.perf_counter()
    penalty, pairs = term.penalty(e.out.vertices, e.pairs, e.faces, e.degenerate)
    if e.stats is not None:
        e.stats["collision_seconds"] = e.stats.get("collision_seconds", 0.0) + time.perf_counter() - start
        e.stats["collisions"] = pairs.counts(len(penalty))
        e.stats["pairs"] = pairs
    return e.stage.collision * penalty  # not squared (SMPLify-X)


def _depth(e: Evaluation) -> Tensor | None:
    if "transl" not in e.p:
        return None
    return e.objective.config.depth_weight**2 * (e.p["transl"][:, 2] - e.targets.depth0).square()


def _world(e: Evaluation) -> Tensor | None:
    if e.stage.world <= 0 or not bool(e.targets.world_confidence.any()):
        return None
    return e.stage.world**2 * bone_direction_term(e.keypoints[:, :25], e.targets.world, e.targets.world_confidence)


TERMS: dict[str, Callable[[Evaluation], Tensor | None]] = {
    "data": _data, "body_pose": _body_pose, "bending": _bending, "shape": _shape, "expression": _expression,
    "hand_pose": _hand_pose, "jaw": _jaw, "collision": _collision, "depth": _depth, "world": _world,
}  # fmt: skip


def pca_hand_components(model: BodyModel) -> dict[str, Tensor]:
    """{hand pose name: its PCA basis (k, 45)} when the model takes hand poses as PCA coefficients, else {}
    (the hand prior is measured on axis-angle: objective terms decode through these)."""
    if not model.use_pca:
        return {}
    sizes = model.parameter_sizes()
    return {p: getattr(model, f"{p}_components") for p in ("left_hand_pose", "right_hand_pose") if p in sizes}


@dataclass
class Objective:
    """The body stages' objective for one model and configuration; call `terms` per evaluation."""

    model: BodyModel
    regressor: KeypointRegressor
    pose_prior: PosePrior
    config: FitConfig
    base_weights: Tensor  # (135,) 1 for fitted keypoints, 0 for ignored or unavailable ones
    hand_components: dict[str, Tensor]  # PCA bases of the hands when the model uses PCA
    collision: CollisionTerm | None = None  # None: no interpenetration term in this fit
    # the model and regressor computing only the vertices keypoints need (regressors.keypoint_model), used
    # by stages without the collision term, which needs the whole mesh; None: always the whole model
    keypoint_model: BodyModel | None = None
    keypoint_regressor: KeypointRegressor | None = None
    _group_weights: dict = field(default_factory=dict, repr=False)  # made once per (hand, face) weight pair
    _pair_part: tuple | None = field(default=None, repr=False)  # the last `_posed_for_pairs`: (ids, its result)

    def group_weights(self, hand_weight: float, face_weight: float) -> Tensor:
        """(135,) the base weights times the stage's hand and face weights (losses.group_weights), made
        once per pair of weights rather than at every evaluation."""
        key = (hand_weight, face_weight)
        if key not in self._group_weights:
            self._group_weights[key] = group_weights(self.base_weights, GROUPS, hand_weight, face_weight)
        return self._group_weights[key]

    def body_params(self, p: dict[str, Tensor], targets: Targets) -> dict[str, Tensor]:
        """Optimised variables -> the model's parameters (the pose latent decoded; the fixed translation
        where the translation is not optimised)."""
        out = {k: v for k, v in p.items() if k != "pose_latent"}
        out["body_pose"] = self.pose_prior.decode_rotations(p["pose_latent"])  # axis-angle or (N, 21, 3, 3)
        if "transl" not in out:
            out["transl"] = targets.fixed_transl
        return out

    def evaluate(self, p: dict[str, Tensor], stage: Stage, targets: Targets, stats: dict | None = None,
                 pairs: Collisions | None = None) -> Evaluation:
        """Pose the model for the variables `p`: an Evaluation whose `terms()` and `keypoints` other
        objectives can build on (video/sequence.py). `pairs`: the colliding pairs to measure the collision
        term on (None: search).

        Only the vertices the terms read are posed (the same values as the whole mesh's, bit for bit): the
        keypoints' (`keypoint_model`) and, where the stage's collision term is on, those of the colliding
        triangles. The whole mesh is posed without gradient where the pairs are searched, and entirely only
        without a `keypoint_model`."""
        params = self.body_params(p, targets)
        collide = self.collision is not None and stage.collision > 0
        if self.keypoint_model is None:
            return Evaluation(self, p, params, self.model(**params), stage, targets, stats, self.regressor, pairs)
        if not collide:
            out = self.keypoint_model(**params)
            return Evaluation(self, p, params, out, stage, targets, stats, self.keypoint_regressor, pairs)
        degenerate = None
        if pairs is None:  # the search needs every triangle, not their gradients
            with torch.no_grad():
                vertices = self.model(**params).vertices
            start = time.perf_counter()
            pairs, degenerate = self.collision.find(vertices)
            if stats is not None:
                stats["collision_seconds"] = stats.get("collision_seconds", 0.0) + time.perf_counter() - start
        model, regressor, faces = self._posed_for_pairs(pairs)
        return Evaluation(self, p, params, model(**params), stage, targets, stats, regressor, pairs, faces, degenerate)

    def _posed_for_pairs(self, pairs: Collisions) -> tuple[BodyModel, KeypointRegressor, Tensor]:
        """(a model posing only the keypoints' vertices and the corners of the triangles in `pairs`
        (BodyModel.vertex_subset), its keypoint regressor, the mesh's faces as rows of its vertices (-1 for
        corners it lacks)). Remade only when the vertices change: a line search measures every trial on the
        pairs of its start."""
        faces = self.collision.faces.to(self.model.v_template.device)
        corners = faces.index_select(0, pairs.faces.flatten()).flatten()
        ids = torch.unique(torch.cat([self.regressor.vertex_ids(), corners]))
        last = self._pair_part
        if last is not None and last[0].shape == ids.shape and torch.equal(last[0], ids):
            return last[1]
        row = torch.full((self.model.num_vertices,), -1, dtype=torch.long, device=ids.device)
        row[ids] = torch.arange(len(ids), device=ids.device)
        part = (self.model.vertex_subset(ids), self.regressor.on_subset(ids), row[faces])
        self._pair_part = (ids, part)
        return part

    def terms(self, p: dict[str, Tensor], stage: Stage, targets: Targets,
              stats: dict | None = None, pairs: Collisions | None = None) -> dict[str, Tensor]:
        """Every term that applies, per item (N,). `stats`, `pairs` (optional): see Evaluation."""
        return self.evaluate(p, stage, targets, stats, pairs).terms()
