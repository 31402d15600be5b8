"""The SMPLify-X objective, term by term, batched: every function returns one value per item (B,).

E = E_J (robust reprojection) + pose prior + bending + shape + expression + hands + jaw (+ collision),
with the weight conventions of schedule.py (Pavlakos et al. 2019, eq. 1 and its code).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["geman_mcclure", "data_term", "l2", "jaw_prior", "group_weights", "bone_direction_term", "BONES"]

# Reprojection residuals are measured in pixels of an image 1000 pixels high (SMPLify-X's 1000 / H data
# weight), so that one robust scale suits every image size.
REFERENCE_HEIGHT = 1000.0


def geman_mcclure(squared: Tensor, rho: float) -> Tensor:
    """Geman-McClure of squared residuals: rho^2 r^2 / (r^2 + rho^2); quadratic near 0, saturates at rho^2."""
    return rho**2 * squared / (squared + rho**2)


def data_term(projected: Tensor, target: Tensor, weights: Tensor, image_height: Tensor, rho: float,
              per_coordinate: bool = False) -> Tensor:
    """Robust reprojection error.

    projected, target: (B, K, 2) pixels; weights: (B, K) keypoint weight x confidence (squared here, as
    in SMPLify-X); image_height: (B,). per_coordinate=True robustifies x and y separately (SMPLify-X's
    code); the default robustifies the residual's length (the paper's form, rotation invariant).
    """
    residual = (projected - target) * (REFERENCE_HEIGHT / image_height)[:, None, None]
    if per_coordinate:
        robust = geman_mcclure(residual.square(), rho).sum(-1)
    else:
        robust = geman_mcclure(residual.square().sum(-1), rho)
    return (weights.square() * robust).sum(-1)


def l2(x: Tensor) -> Tensor:
    """Sum of squares per item: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).square().sum(-1)


def jaw_prior(jaw_pose: Tensor, axis_weights: Tensor) -> Tensor:
    """sum_k (w_k jaw_k)^2: (B, 3), weights (3,) -> (B,). The mouth-opening axis x gets a 10x smaller
    weight than y and z in SMPLify-X's schedule."""
    return (jaw_pose * axis_weights).square().sum(-1)


def group_weights(base: Tensor, groups: dict, hand_weight: float, face_weight: float) -> Tensor:
    """(K,) base weights (0 for ignored or unavailable points, 1 else) x group weight (hands, face); the data
    term's per-keypoint weights are these times the detection confidences (objective.py)."""
    w = base.clone()
    for name in ("left_hand", "right_hand"):
        w[groups[name]] = w[groups[name]] * hand_weight
    for name in ("face", "contour"):
        w[groups[name]] = w[groups[name]] * face_weight
    return w


# BODY_25 bones whose directions the 3D term compares (limbs, shoulder and hip lines, the trunk)
BONES = ((2, 3), (3, 4), (5, 6), (6, 7), (9, 10), (10, 11), (12, 13), (13, 14), (2, 5), (9, 12), (8, 1))


def bone_direction_term(points: Tensor, world: Tensor, confidence: Tensor, bones=BONES) -> Tensor:
    """Squared differences of unit bone directions: sum_b c_b |u_b(points) - u_b(world)|^2, (B,).

    points, world: (B, 25, 3) BODY_25 points in camera axes (any origin, any scale: only directions
    count, so a detector's metric landmarks compare with the model's joints); confidence (B, 25); a
    bone's weight is the smaller confidence of its two ends."""
    a, b = torch.tensor(bones, device=points.device).unbind(1)
    def unit(x):
        d = x[:, b] - x[:, a]
        return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    weight = torch.minimum(confidence[:, a], confidence[:, b])
    return (weight * (unit(points) - unit(world)).square().sum(-1)).sum(-1)
