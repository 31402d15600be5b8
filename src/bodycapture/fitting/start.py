"""Where the fits start: several hypotheses per person, fitted together as items of one batch.

A fit of 2D keypoints has wrong minima that no local optimiser leaves: facing the camera or away, the
torso leaning towards or away from it, a limb in front or behind (Pavlakos et al. 2019, Fig. A.4). So each
person gets several starts (`FitConfig.starts`), the fitter runs them all as batch items, drops the clearly
losing ones after a few stages, and keeps the best by its final objective. The kinds of start:

- "shoulders": the prior's mean pose, upright, facing the camera when the left shoulder is on the image's
  right (away otherwise): SMPLify-X's start.
- "side": the same turned by 180 degrees, where the shoulders are closer than `side_view_threshold` pixels
  or one is missing (SMPLify-X fits both orientations of such side views one after the other).
- "turned": the turned start for everybody.
- "poses": the centres of 16 clusters of real poses (CMU training subjects, tools/pose_starts.py: standing,
  walking, crouching, sitting on the floor, arms raised...), facing as "shoulders"; after the camera stage
  only the `pose_starts_kept` that best explain each person's body keypoints go on.
- depth flips (`FitConfig.depth_flips`, not a start kind: made in the middle of the fit): after stage
  `prune_after_stage`, each person's fit so far is copied with one limb (or both thighs, or the trunk)
  mirrored in depth, the reading that the 2D keypoints cannot tell from it (`depth_flips`); the copies are
  posed by the same inverse kinematics as "world" and fitted on for a stage beside the original, and
  the best goes on ("kinematic jumps", Sminchisescu and Triggs, CVPR 2003).
- "world": where the detector gave metric 3D landmarks (MediaPipe's world landmarks), a short batched
  inverse kinematics: the body's orientation by Procrustes on the torso, then orientation and pose latent
  by L-BFGS on bone directions (`losses.bone_direction_term`) under the pose prior. It knows the depth
  order that the 2D keypoints leave open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..keypoints.layout import BODY_25
from ..keypoints.regressors import KeypointRegressor
from ..models.body_model import BodyModel
from ..models.lbs import axis_angle_to_matrix, matrix_to_axis_angle
from ..priors import PosePrior
from .lbfgs import LBFGSSettings, minimize
from .losses import bone_direction_term

__all__ = ["Starts", "START_KINDS", "DEPTH_FLIPS", "facing_away", "turned_away", "upright", "make_starts",
           "world_landmark_start", "depth_flips"]

START_KINDS = ("shoulders", "side", "turned", "poses", "world")
_TORSO = [BODY_25.index(n) for n in ("RShoulder", "LShoulder", "RHip", "LHip", "Neck", "MidHip")]
IK_PRIOR_WEIGHT = 0.05  # pose-prior weight of the inverse kinematics, against bone terms of up to 4 each
IK_SETTINGS = LBFGSSettings(max_iter=30)


# Depth flips: name -> the BODY_25 bones (parent, child) mirrored in depth about their parent end; each
# carries the points below its child along, so every other bone keeps its direction
DEPTH_FLIPS = {
    "right upper arm": ((2, 3),), "right forearm": ((3, 4),), "left upper arm": ((5, 6),), "left forearm": ((6, 7),),
    "right thigh": ((9, 10),), "right shin": ((10, 11),), "left thigh": ((12, 13),), "left shin": ((13, 14),),
    "thighs": ((9, 10), (12, 13)), "trunk": ((8, 1),),
}  # fmt: skip
_BELOW = {  # a BODY_25 point -> itself and the points that hang from it
    3: (3, 4), 4: (4,), 6: (6, 7), 7: (7,), 10: (10, 11, 22, 23, 24), 11: (11, 22, 23, 24), 13: (13, 14, 19, 20, 21),
    14: (14, 19, 20, 21), 1: (0, 1, 2, 3, 4, 5, 6, 7, 15, 16, 17, 18),
}  # fmt: skip
FLIP_MIN_DEPTH = 0.25  # a bone is flipped only when its depth is at least this share of its length


@dataclass
class Starts:
    """N starting points for P people: owner (N,) the person of each; global_orient (N, 3); pose_latent
    (N, L); flipped (N,) whether the start faces away from the camera; kind (N,) names from START_KINDS."""

    owner: Tensor
    global_orient: Tensor
    pose_latent: Tensor
    flipped: Tensor
    kind: list[str]

    def __len__(self) -> int:
        return len(self.owner)

    def extended(self, other: "Starts") -> "Starts":
        """These starts followed by `other`'s."""
        return Starts(torch.cat([self.owner, other.owner]), torch.cat([self.global_orient, other.global_orient]),
                      torch.cat([self.pose_latent, other.pose_latent]), torch.cat([self.flipped, other.flipped]),
                      self.kind + other.kind)


def facing_away(keypoints: Tensor, side_view_threshold: float) -> tuple[Tensor, Tensor]:
    """From the shoulders of keypoints (P, 135, 3): (away (P,), ambiguous (P,)) bools. A person whose left
    shoulder is on the image's left faces away; shoulders closer than the threshold, or a missing one,
    make the orientation ambiguous."""
    b = BODY_25.index
    ls, rs = keypoints[:, b("LShoulder")], keypoints[:, b("RShoulder")]
    both = (ls[:, 2] > 0) & (rs[:, 2] > 0)
    dx = ls[:, 0] - rs[:, 0]  # > 0: the subject's left is on the image's right, i.e. facing the camera
    return both & (dx < 0), ~both | (dx.abs() < side_view_threshold)


def turned_away(global_orient: Tensor) -> Tensor:
    """(N, 3) axis-angle orientations -> (N,) bool: the body's front (its +z) points away from the camera."""
    return axis_angle_to_matrix(global_orient)[:, 2, 2] > 0


def upright(away: Tensor, dtype, device) -> Tensor:
    """(N,) bool -> (N, 3) axis-angle: upright in camera space (y down), facing the camera or away."""
    facing = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0], dtype=dtype, device=device))
    turn = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi], dtype=dtype, device=device))
    rot = torch.where(away[:, None, None], (turn @ facing).expand(len(away), 3, 3), facing.expand(len(away), 3, 3))
    return matrix_to_axis_angle(rot)


def _procrustes_rotation(source: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """(B, K, 3) x2, weights (B, K) -> (B, 3, 3) the rotation R minimising sum w |R s - t|^2 (centred;
    Kabsch, with the reflection removed)."""
    w = weights[..., None]
    total = w.sum(1, keepdim=True).clamp_min(1e-9)
    s = source - (w * source).sum(1, keepdim=True) / total
    t = target - (w * target).sum(1, keepdim=True) / total
    u, _, vh = torch.linalg.svd((w * t).transpose(1, 2) @ s)  # t^T s = U S V^T -> R = U diag(1, 1, d) V^T
    d = torch.linalg.det(u @ vh)
    fix = torch.ones_like(u[:, 0])
    fix[:, 2] = d
    return u @ torch.diag_embed(fix) @ vh


def world_landmark_start(world: Tensor, model: BodyModel, regressor: KeypointRegressor, pose_prior: PosePrior,
                         settings: LBFGSSettings = IK_SETTINGS) -> tuple[Tensor, Tensor]:
    """Inverse kinematics on metric 3D landmarks: world (P, 25, 4) BODY_25 points in camera axes with a
    confidence -> (global_orient (P, 3), pose_latent (P, L)). The orientation starts from a Procrustes fit
    of the mean pose's torso; then orientation and pose latent minimise the bone-direction differences
    plus IK_PRIOR_WEIGHT x the prior's energy."""
    dtype, dev = model.v_template.dtype, model.v_template.device
    world = world.to(dtype=dtype, device=dev)
    points, conf = world[..., :3], world[..., 3].clamp(0, 1)
    P = len(world)
    latent0 = pose_prior.init_latent(P, dtype, dev)
    with torch.no_grad():
        rest = regressor(model(body_pose=pose_prior.decode(latent0)))[:, :25]
        torso_w = conf[:, _TORSO] + 1e-6
        orient0 = matrix_to_axis_angle(_procrustes_rotation(rest[:, _TORSO], points[:, _TORSO], torso_w))
    L = latent0.shape[1]

    def objective(x: Tensor, rows: Tensor | None):
        x = x.detach().requires_grad_(True)
        pick = (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))  # noqa: E731
        orient, latent = x[:, :3], x[:, 3:]
        body = regressor(model(global_orient=orient, body_pose=pose_prior.decode_rotations(latent)))[:, :25]
        f = bone_direction_term(body, pick(points), pick(conf)) + IK_PRIOR_WEIGHT * pose_prior.penalty(latent)
        (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g

    res = minimize(objective, torch.cat([orient0, latent0], 1), settings, partial=True)
    x = torch.where(torch.isfinite(res.x).all(1, keepdim=True), res.x, torch.cat([orient0, latent0], 1))
    return x[:, :3].detach(), x[:, 3 : 3 + L].detach()


def depth_flips(points: Tensor, min_depth: float = FLIP_MIN_DEPTH) -> tuple[Tensor, Tensor, list[str]]:
    """Copies of BODY_25 points (B, 25, 3) (camera axes) with bones mirrored in depth (DEPTH_FLIPS): each
    flipped bone's child end goes from a + d to a + (d_x, d_y, -d_z), and the points below it move with
    it; a copy is made only where each flipped bone's depth is at least `min_depth` of its length (else the
    copy is the same reading). -> (points (M, 25, 3), source (M,) the row each copy came from, names (M,))."""
    copies, sources, names = [], [], []
    for name, bones in DEPTH_FLIPS.items():
        flipped, deep = points.clone(), torch.ones(len(points), dtype=torch.bool, device=points.device)
        for a, b in bones:
            d = points[:, b] - points[:, a]
            deep &= d[:, 2].abs() >= min_depth * d.norm(dim=-1)
            shift = torch.zeros_like(d)
            shift[:, 2] = -2 * d[:, 2]
            flipped[:, list(_BELOW[b])] += shift[:, None]
        rows = torch.nonzero(deep).flatten()
        copies.append(flipped[rows])
        sources.append(rows)
        names.extend([name] * len(rows))
    return torch.cat(copies), torch.cat(sources), names


def pose_starts() -> Tensor:
    """(16, 63) axis-angle body poses: the "poses" starts (package data from tools/pose_starts.py)."""
    from importlib.resources import files

    import numpy as np

    with files("bodycapture").joinpath("data/pose_starts.npz").open("rb") as fh:
        return torch.as_tensor(np.load(fh)["body_pose"])


def make_starts(keypoints: Tensor, world: Tensor | None, model: BodyModel, regressor: KeypointRegressor,
                pose_prior: PosePrior, kinds, side_view_threshold: float) -> Starts:
    """Every start of every person. keypoints (P, 135, 3); world (P, 25, 4) or None. A person with 3D
    landmarks (at least 4 torso points) gets the "world" start when `kinds` has it; the 2D starts
    ("shoulders" and, with it, "side", "turned", "poses") go to everybody when `kinds` has "shoulders",
    else only to the people without a "world" start, so that everybody has at least one start."""
    unknown = set(kinds) - set(START_KINDS)
    if unknown:
        raise ValueError(f"unknown start kinds {sorted(unknown)}; known: {', '.join(START_KINDS)}")
    dtype, dev = model.v_template.dtype, model.v_template.device
    P = len(keypoints)
    has_world = torch.zeros(P, dtype=torch.bool, device=dev)
    if "world" in kinds and world is not None:
        has_world = (world[..., 3][:, _TORSO] > 0).sum(1) >= 4  # the torso given (seen or guessed)
    two_d = torch.ones_like(has_world) if "shoulders" in kinds else ~has_world
    away, ambiguous = facing_away(keypoints, side_view_threshold)
    mean = pose_prior.init_latent(P, dtype, dev)
    owner, orient, latent, flipped, kind = [], [], [], [], []

    def add(rows: Tensor, o: Tensor, z: Tensor, away_: Tensor, name: str) -> None:
        owner.append(rows)
        orient.append(o)
        latent.append(z)
        flipped.append(away_)
        kind.extend([name] * len(rows))

    rows = torch.nonzero(two_d).flatten()
    add(rows, upright(away[rows], dtype, dev), mean[rows], away[rows], "shoulders")
    turned = ambiguous if "side" in kinds and "turned" not in kinds else torch.ones_like(ambiguous)
    if "side" in kinds or "turned" in kinds:
        rows = torch.nonzero(two_d & turned).flatten()
        add(rows, upright(~away[rows], dtype, dev), mean[rows], ~away[rows], "turned" if "turned" in kinds else "side")
    if "poses" in kinds:
        bank = pose_prior.encode(pose_starts().to(dtype=dtype, device=dev))  # (K, L)
        rows = torch.nonzero(two_d).flatten().repeat_interleave(len(bank))
        add(rows, upright(away[rows], dtype, dev), bank.repeat(int(two_d.sum()), 1), away[rows], "poses")
    rows = torch.nonzero(has_world).flatten()
    if len(rows):
        o, z = world_landmark_start(world[rows], model, regressor, pose_prior)
        add(rows, o, z, turned_away(o), "world")
    return Starts(torch.cat(owner), torch.cat(orient), torch.cat(latent), torch.cat(flipped), kind)
