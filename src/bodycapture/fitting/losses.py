"""The SMPLify-X objective, term by term, batched: every function returns one value per item (B,).

E = E_J (robust reprojection) + pose prior + bending + shape + expression + hands + jaw (+ collision),
with the weight conventions of schedule.py (Pavlakos et al. 2019, eq. 1 and its code).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["geman_mcclure", "data_term", "l2", "jaw_prior", "keypoint_weights"]

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


def keypoint_weights(confidence: Tensor, base: Tensor, groups: dict, hand_weight: float, face_weight: float) -> Tensor:
    """Per-keypoint data weights (B, K): base weights (K,) (0 for ignored or unavailable points, 1 else)
    x group weight (hands, face) x detection confidence (B, K)."""
    w = base.clone()
    for name in ("left_hand", "right_hand"):
        w[groups[name]] = w[groups[name]] * hand_weight
    for name in ("face", "contour"):
        w[groups[name]] = w[groups[name]] * face_weight
    return confidence * w
