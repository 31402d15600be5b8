"""Rotations, the kinematic chain and linear blend skinning, as pure tensor functions.

The maths of the SMPL family (Loper et al., "SMPL: A Skinned Multi-Person Linear Model", SIGGRAPH Asia
2015; Pavlakos et al., "Expressive Body Capture", CVPR 2019):

    v_shaped = T + S(beta, psi)                     shape and expression blend shapes
    J        = J_regressor(v_shaped)                rest joints
    v_posed  = v_shaped + P(R(theta) - I)           pose-corrective blend shapes
    v        = sum_k w_k G_k(theta, J) v_posed      linear blend skinning

Every function takes a leading batch dimension B, runs on the device and dtype of its inputs, and keeps
autograd intact (no in-place writes on tensors that need gradients).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "atan2",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_axis_angle_below_pi",
    "shortest_arc",
    "kinematic_levels",
    "KinematicChain",
    "batch_rigid_transform",
    "blend_shapes",
    "pad_rows",
    "rows_matmul",
    "pose_features",
    "skin",
    "lbs",
]

# Below this squared angle (rad^2) the Taylor series of sin(a)/a and (1-cos a)/a^2 is used: with terms
# up to a^4 the truncation error is a^6/5040 < 1e-22, far below float64 rounding.
_SMALL_ANGLE_SQ = 1e-6


# CPU kernels compute atan2 (also pow with a fractional exponent, sigmoid) with one formula for the elements
# of whole vectors and another for the few left over after the last one: the same value rounds differently
# (by an ulp) with its place in the tensor, so a person's fit depended on how many others shared its batch
# (measured on AMD EPYC and Intel VMs, torch 2.13, AVX2: 18 % of float32 atan2 values differ; sin, cos,
# exp, sqrt do not). A tensor whose size is a multiple of this many elements has no leftovers (two vectors
# of 512 bits of float32 are 32 elements; 256 leaves room for wider vectors).
VECTOR_SPAN = 256


def atan2(y: Tensor, x: Tensor) -> Tensor:
    """torch.atan2 (y, x broadcast together), computed the same way for every element whatever the tensor's
    size: the operands are flattened and padded to a multiple of VECTOR_SPAN elements (see above)."""
    y, x = torch.broadcast_tensors(y, x)
    n = y.numel()
    pad = -n % VECTOR_SPAN
    flat_y = torch.cat([y.reshape(-1), y.new_zeros(pad)])
    flat_x = torch.cat([x.reshape(-1), x.new_ones(pad)])
    return torch.atan2(flat_y, flat_x)[:n].view(y.shape)


def _skew(v: Tensor) -> Tensor:
    """Cross-product matrices: (..., 3) -> (..., 3, 3) with skew(v) @ x == cross(v, x)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula: axis-angle vectors (..., 3) -> rotation matrices (..., 3, 3).

    R = I + (sin a / a) K + ((1 - cos a) / a^2) K^2 with K = skew(axis_angle) and a = |axis_angle|.
    Near a = 0 both coefficients come from their Taylor series, so the value and its gradient are exact
    at and around zero (no 1e-8 offset, no NaN gradient).
    """
    a2 = (axis_angle * axis_angle).sum(-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    small = a2 < _SMALL_ANGLE_SQ
    a2_safe = torch.where(small, torch.ones_like(a2), a2)
    a_safe = a2_safe.sqrt()
    sin_over_a = torch.where(small, 1.0 - a2 / 6.0 + a2 * a2 / 120.0, torch.sin(a_safe) / a_safe)
    one_minus_cos_over_a2 = torch.where(
        small, 0.5 - a2 / 24.0 + a2 * a2 / 720.0, (1.0 - torch.cos(a_safe)) / a2_safe
    )
    k = _skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin_over_a * k + one_minus_cos_over_a2 * (k @ k)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3) with angle in [0, pi].

    Goes through the unit quaternion (largest-component branch), which is stable for every angle,
    including 0 and pi.
    """
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate quaternions (w, x, y, z) scaled by 4*q_i; pick the one with the largest q_i.
    q_abs2 = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    q_abs = q_abs2.clamp_min(1e-12).sqrt()  # 2*|q_i|
    r21_12 = m[..., 2, 1] - m[..., 1, 2]
    r02_20 = m[..., 0, 2] - m[..., 2, 0]
    r10_01 = m[..., 1, 0] - m[..., 0, 1]
    r10p01 = m[..., 1, 0] + m[..., 0, 1]
    r02p20 = m[..., 0, 2] + m[..., 2, 0]
    r12p21 = m[..., 1, 2] + m[..., 2, 1]
    candidates = torch.stack(
        [
            torch.stack([q_abs2[..., 0], r21_12, r02_20, r10_01], -1),
            torch.stack([r21_12, q_abs2[..., 1], r10p01, r02p20], -1),
            torch.stack([r02_20, r10p01, q_abs2[..., 2], r12p21], -1),
            torch.stack([r10_01, r02p20, r12p21, q_abs2[..., 3]], -1),
        ],
        -2,
    ) / (2.0 * q_abs[..., None])
    best = q_abs.argmax(-1)
    quat = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = quat * torch.where(quat[..., :1] < 0, -1.0, 1.0)  # w >= 0 so that the angle is in [0, pi]
    xyz = quat[..., 1:]
    sin_half = xyz.norm(dim=-1, keepdim=True)
    half = atan2(sin_half, quat[..., :1])
    # 2*half/sin(half) -> 2 as half -> 0
    scale = torch.where(sin_half < 1e-7, 2.0 + half * half / 3.0, 2.0 * half / sin_half.clamp_min(1e-7))
    return xyz * scale


def matrix_to_axis_angle_below_pi(matrix: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3) in a handful of operations, for rotations by
    less than pi (for a loss evaluated thousands of times: about a third of `matrix_to_axis_angle`'s operations).

    R - R^T = 2 sin(a) skew(n) gives v = 2 sin(a) n; a = atan2(|v| / 2, (trace R - 1) / 2); the result is
    v a / (2 sin a). Equal to `matrix_to_axis_angle` (tested) up to an angle of pi - 1e-4, where the axis
    becomes ill-defined from R - R^T alone; above that it shrinks continuously to zero at pi.
    """
    m = matrix
    v = (m - m.transpose(-1, -2)).flatten(-2)[..., [7, 2, 3]]  # (R21 - R12, R02 - R20, R10 - R01)
    sin = v.norm(dim=-1, keepdim=True) / 2
    cos = (torch.diagonal(m, dim1=-2, dim2=-1).sum(-1, keepdim=True) - 1) / 2
    angle = atan2(sin, cos)
    # a / sin(a) -> 1 + a^2 / 6 as a -> 0 (and a -> 0 is where sin is small with cos > 0)
    scale = torch.where(sin < 1e-6, 1.0 + angle * angle / 6.0, angle / sin.clamp_min(1e-4))
    return v * (scale / 2)


def shortest_arc(a: Tensor, b: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) taking directions a (..., 3) to directions b (..., 3) by the smallest
    angle: R = I + K + K^2 / (1 + cos), K = skew(a x b) for unit a, b. Opposite directions get a half turn
    about an axis perpendicular to a."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    c = (a * b).sum(-1)[..., None, None]
    k = _skew(torch.linalg.cross(a, b, dim=-1))
    eye = torch.eye(3, dtype=a.dtype, device=a.device)
    opposite = c < -1 + 1e-9
    near = torch.where(opposite, torch.ones_like(c), 1.0 + c)
    turn = eye + k + k @ k / near
    helper = torch.where(a[..., :1].abs() < 0.9, torch.tensor([1.0, 0, 0], dtype=a.dtype, device=a.device),
                         torch.tensor([0, 1.0, 0], dtype=a.dtype, device=a.device))
    axis = torch.nn.functional.normalize(torch.linalg.cross(a, helper, dim=-1), dim=-1)
    half = 2 * axis[..., :, None] * axis[..., None, :] - eye
    return torch.where(opposite, half, turn)


def kinematic_levels(parents: Tensor) -> list[Tensor]:
    """Group the joints of a tree by depth (level 0: the root): also checks that `parents` is a tree.

    parents: (J,) int64 with -1 for the root. Returns a list of index tensors; level 0 is the root.
    Raises ValueError when `parents` is not a tree with exactly one root.
    """
    p = [int(x) for x in parents.tolist()]
    if sum(1 for x in p if x < 0) != 1:
        raise ValueError(f"kinematic tree must have exactly one root (parent -1), got parents {p}")
    depth = [-1] * len(p)
    for j in range(len(p)):
        chain, k = [], j
        while depth[k] < 0 and p[k] >= 0:
            chain.append(k)
            k = p[k]
            if len(chain) > len(p):
                raise ValueError(f"kinematic tree has a cycle through joint {j}")
        if depth[k] < 0:  # k is the root
            depth[k] = 0
        for c in reversed(chain):
            depth[c] = depth[p[c]] + 1
    n_levels = max(depth) + 1
    return [
        torch.tensor([j for j in range(len(p)) if depth[j] == d], dtype=torch.long, device=parents.device)
        for d in range(n_levels)
    ]


@dataclass
class KinematicChain:
    """A kinematic tree laid out for composing its transforms by pointer jumping: after step s each joint's
    transform is the product of its own local transform and those of its 2^(s+1) - 1 nearest ancestors, so a
    tree of D levels takes ceil(log2 D) batched steps instead of D - 1 (SMPL-X: 4 instead of 10; each step
    is a few torch operations, forward and backward, which is what a fit's time goes to on the CPU).

    steps: for each step, (J,) the joint whose transform multiplies each joint's from the left, 2^s
    generations up (the joint itself where it has no ancestor that far up); has: the (J,) bool mask of the
    joints that have one."""

    steps: list[Tensor]
    has: list[Tensor]

    @classmethod
    def from_parents(cls, parents: Tensor) -> "KinematicChain":
        """parents: (J,) int64 with -1 for the root (ValueError unless a tree with one root)."""
        kinematic_levels(parents)  # checks the tree
        up = parents.clone()  # each joint's ancestor 2^s generations up, -1 for none
        own = torch.arange(len(parents), device=parents.device)
        steps, has = [], []
        while bool((up >= 0).any()):
            there = up >= 0
            steps.append(torch.where(there, up, own))
            has.append(there)
            up = torch.where(there, up[up.clamp_min(0)], up)
        return cls(steps, has)

    def apply(self, fn: Callable[[Tensor], Tensor]) -> "KinematicChain":
        """The same chain with `fn` applied to its index tensors (e.g. moved to a device)."""
        return KinematicChain([fn(t) for t in self.steps], [fn(t) for t in self.has])


def batch_rigid_transform(
    rot_mats: Tensor, joints: Tensor, parents: Tensor, chain: KinematicChain | None = None
) -> tuple[Tensor, Tensor]:
    """Walk the kinematic chain.

    rot_mats: (B, J, 3, 3) joint rotations relative to the parent; joints: (B, J, 3) rest joints;
    parents: (J,) with -1 for the root; chain: `KinematicChain.from_parents(parents)` (made if None).
    Returns posed joints (B, J, 3) and the skinning transforms (B, J, 4, 4): each joint's world
    transform with its rest location removed, so that it maps rest-pose points to posed points.
    """
    if chain is None:
        chain = KinematicChain.from_parents(parents)
    B, J = joints.shape[:2]
    parent_idx = parents.clamp_min(0)
    rel_joints = joints - torch.where((parents < 0)[:, None], torch.zeros_like(joints), joints[:, parent_idx])
    bottom = joints.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(B, J, 1, 4)
    world = torch.cat([torch.cat([rot_mats, rel_joints[..., None]], -1), bottom], -2)  # (B, J, 4, 4) local

    # pointer jumping: G_j <- G_a G_j with a the joint 2^s generations up, until every chain reaches the root
    for up, has in zip(chain.steps, chain.has):
        world = torch.where(has[:, None, None], world[:, up] @ world, world)

    posed_joints = world[:, :, :3, 3]
    # A_k = G_k - [0 | G_k (J_k, 0)]: removes the rest location of each joint.
    rest_shift = (world[:, :, :3, :3] @ joints[..., None])[..., 0]
    skinning = torch.cat([world[:, :, :3, :3], (posed_joints - rest_shift)[..., None]], -1)
    skinning = torch.cat([skinning, bottom], -2)
    return posed_joints, skinning


# BLAS multiplies a few rows by other routines than many: each row's float32 result differs (by ~1e-6) with
# the number of rows below a threshold, and is the same for every count above it. Measured with torch 2.13's
# MKL, one thread: on an Intel Xeon VM 1 row differs from 2 or more; on an AMD EPYC VM (AVX-512) 1, 2 and 3
# rows differ from 4 or more (every row of batches of 1-39, products of 10-63 x 300-40,000).
MIN_ROWS = 4


def pad_rows(a: Tensor, rows: int = MIN_ROWS) -> Tensor:
    """a (B, ...) with zero rows appended up to `rows` (unchanged when B >= rows)."""
    if a.shape[0] >= rows:
        return a
    return torch.cat([a, a.new_zeros((rows - a.shape[0],) + tuple(a.shape[1:]))])


def rows_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a (B, k) @ b (k, n) -> (B, n), each row's result the same whatever B is: fewer than MIN_ROWS rows are
    padded with zero rows (BLAS would round them differently), so that a fit does not depend on how many
    people share its batch (the line searches evaluate the problems still searching, often one or two).
    Holds on one torch thread (`bodycapture`'s default): on more, BLAS splits the rows between threads."""
    return (pad_rows(a) @ b)[: a.shape[0]]


def blend_shapes(coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Linear blend shapes: coeffs (B, S), dirs (V, 3, S) -> offsets (B, V, 3)."""
    V, _, S = dirs.shape
    return rows_matmul(coeffs, dirs.reshape(V * 3, S).T).reshape(-1, V, 3)


def pose_features(rot_mats: Tensor) -> Tensor:
    """Pose-corrective feature: (B, J, 3, 3) -> (B, 9 (J - 1)), flattened R - I of the non-root joints."""
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).flatten(1)


def skin(vertices: Tensor, weights: Tensor, transforms: Tensor) -> Tensor:
    """Linear blend skinning: vertices (B, V, 3), weights (V, J), transforms (B, J, 4, 4) -> (B, V, 3)."""
    B, J = transforms.shape[:2]
    blended = (weights @ transforms[:, :, :3].reshape(B, J, 12)).reshape(B, -1, 3, 4)  # (B, V, 3, 4)
    return (blended[..., :3] @ vertices[..., None])[..., 0] + blended[..., 3]


def lbs(
    coeffs: Tensor,
    rot_mats: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Tensor | None,
    joint_template: Tensor,
    joint_shapedirs: Tensor,
    parents: Tensor,
    weights: Tensor,
    chain: KinematicChain | None = None,
) -> tuple[Tensor, Tensor]:
    """The full SMPL-family forward pass.

    coeffs:          (B, S)       shape and expression coefficients, concatenated
    rot_mats:        (B, J, 3, 3) joint rotations, root first
    v_template:      (V, 3)       rest template
    shapedirs:       (V, 3, S)    shape and expression directions, matching `coeffs`
    posedirs:        (9 (J-1), 3V) pose-corrective directions, or None when the model has none
    joint_template:  (J, 3)       J_regressor @ v_template
    joint_shapedirs: (J, 3, S)    J_regressor applied to each column of shapedirs
    parents:         (J,)         parent of each joint, -1 for the root
    weights:         (V, J)       skinning weights
    chain:           `KinematicChain.from_parents(parents)`, made once by the caller (made here if None)
    Returns vertices (B, V, 3) and posed joints (B, J, 3).

    Rest joints are regressed from the joint-space blend shapes: J_regressor (v_template + S c) equals
    joint_template + joint_shapedirs c, and costs J x S instead of J x V per item.
    """
    v_shaped = v_template + blend_shapes(coeffs, shapedirs)
    rest_joints = joint_template + blend_shapes(coeffs, joint_shapedirs)
    v_posed = v_shaped
    if posedirs is not None:
        v_posed = v_shaped + rows_matmul(pose_features(rot_mats), posedirs).reshape(v_shaped.shape)
    posed_joints, transforms = batch_rigid_transform(rot_mats, rest_joints, parents, chain)
    vertices = skin(v_posed, weights, transforms)
    return vertices, posed_joints
