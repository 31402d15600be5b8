"""Error metrics of 3D human reconstruction, batched: MPJPE, PA-MPJPE, vertex-to-vertex (v2v), 2D errors.

PA = Procrustes-aligned: the prediction is first moved by the similarity transform (scale, rotation,
translation) that best fits it to the ground truth in the least-squares sense (Umeyama 1991), as in the
EHF protocol of SMPLify-X and in Human3.6M's "protocol 2". Distances are in the input units (metres for
our models); report millimetres by multiplying by 1000.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["procrustes_align", "mpjpe", "pa_mpjpe", "v2v", "pck", "pixel_error"]


def procrustes_align(pred: Tensor, target: Tensor, weights: Tensor | None = None) -> Tensor:
    """The similarity transform of `pred` (B, N, 3) that best matches `target` (B, N, 3), applied to pred.

    weights (B, N): optional per-point weights (0 excludes a point). Reflections are excluded.
    """
    w = torch.ones(pred.shape[:2], dtype=pred.dtype, device=pred.device) if weights is None else weights
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    mu_p = (w[..., None] * pred).sum(1, keepdim=True)
    mu_t = (w[..., None] * target).sum(1, keepdim=True)
    p, t = pred - mu_p, target - mu_t
    cov = (w[..., None] * t).transpose(1, 2) @ p  # (B, 3, 3): sum_i w_i t_i p_i^T
    u, s, vt = torch.linalg.svd(cov)
    d = torch.ones_like(s)
    d[:, 2] = torch.sign(torch.linalg.det(u @ vt))
    rot = u @ torch.diag_embed(d) @ vt  # maps centred pred onto centred target
    var_p = (w * p.square().sum(-1)).sum(1)
    scale = (s * d).sum(1) / var_p.clamp_min(1e-12)
    return scale[:, None, None] * p @ rot.transpose(1, 2) + mu_t


def _mean_distance(a: Tensor, b: Tensor, mask: Tensor | None) -> Tensor:
    dist = (a - b).norm(dim=-1)
    if mask is None:
        return dist.mean(1)
    m = mask.to(dist.dtype)
    return (dist * m).sum(1) / m.sum(1).clamp_min(1)


def mpjpe(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean per-joint position error (B,), without alignment (points in the same frame)."""
    return _mean_distance(pred, target, mask)


def pa_mpjpe(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """MPJPE after Procrustes alignment on the same (masked) points (B,)."""
    weights = None if mask is None else mask.to(pred.dtype)
    return _mean_distance(procrustes_align(pred, target, weights), target, mask)


def v2v(pred: Tensor, target: Tensor, align: bool = True, region: Tensor | None = None) -> Tensor:
    """Mean vertex-to-vertex error (B,) of meshes with the same topology. With align, the whole mesh
    (or the `region` (V,) bool mask alone: EHF-style per-part errors) is Procrustes-aligned first."""
    if region is not None:
        pred, target = pred[:, region], target[:, region]
    if align:
        pred = procrustes_align(pred, target)
    return (pred - target).norm(dim=-1).mean(1)


def pixel_error(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean 2D distance (B,) over the masked keypoints: pred, target (B, K, 2), mask (B, K)."""
    return _mean_distance(pred, target, mask)


def pck(pred: Tensor, target: Tensor, mask: Tensor, threshold: Tensor | float) -> Tensor:
    """Fraction (B,) of masked keypoints within `threshold` pixels (a number or (B,))."""
    dist = (pred - target).norm(dim=-1)
    thr = torch.as_tensor(threshold, dtype=dist.dtype, device=dist.device).reshape(-1, 1)
    m = mask.to(dist.dtype)
    return ((dist <= thr).to(dist.dtype) * m).sum(1) / m.sum(1).clamp_min(1)
