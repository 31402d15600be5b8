"""Temporal smoothing of a track's per-frame parameters, for per-frame fits made elsewhere (sequence.py fits
with a temporal term instead).

Per-frame fits of a clip jitter (their errors are nearly white from frame to frame: benchmarks/
video_fit.py), so a Gaussian filter over frames removes most of it. Rotations are averaged as
matrices (the chordal mean over the window) and projected back onto the rotations (SVD), joint by joint;
translations, expressions and hand PCA coefficients are averaged as they are; the shape is the track's
median (one body per track). Windows are cut at the clip's ends (weights renormalised).
"""

from __future__ import annotations

import numpy as np

__all__ = ["gaussian_weights", "smooth_rotations", "blend_rotations", "smooth_track", "ROTATION_PARAMS"]

ROTATION_PARAMS = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose")  # axis-angle per joint


def gaussian_weights(frames: int, sigma: float) -> np.ndarray:
    """(T, T) row-normalised Gaussian weights over frame distance (sigma in frames; 0: the identity)."""
    if sigma <= 0:
        return np.eye(frames)
    t = np.arange(frames, dtype=np.float64)
    w = np.exp(-0.5 * ((t[:, None] - t[None]) / sigma) ** 2)
    w[w < 1e-6] = 0.0
    return w / w.sum(1, keepdims=True)


def smooth_rotations(axis_angle: np.ndarray, sigma: float) -> np.ndarray:
    """(T, 3 N) axis-angle of N joints -> the same, each joint's rotation the Gaussian-weighted chordal mean
    of its rotations over the neighbouring frames (projected back onto the rotations)."""
    R = _matrices(axis_angle)
    return _nearest_rotations(np.einsum("st,tnij->snij", gaussian_weights(len(R), sigma), R))


def blend_rotations(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(T, 3 N) axis-angle each and (T,) weights in [0, 1] -> per frame and joint the weighted chordal mean
    (1 - w) R_a + w R_b projected back onto the rotations (axis-angle (T, 3 N)): a at 0, b at 1."""
    w = np.asarray(weight, dtype=np.float64)[:, None, None, None]
    return _nearest_rotations((1 - w) * _matrices(a) + w * _matrices(b))


def _matrices(axis_angle: np.ndarray) -> np.ndarray:
    """(T, 3 N) axis-angle -> (T, N, 3, 3) rotation matrices."""
    import torch

    from ..models.lbs import axis_angle_to_matrix

    T = len(axis_angle)
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(axis_angle), dtype=torch.float64).reshape(T, -1, 3)).numpy()


def _nearest_rotations(mean: np.ndarray) -> np.ndarray:
    """(T, N, 3, 3) matrices -> the nearest rotations (SVD), as axis-angle (T, 3 N)."""
    import torch

    from ..models.lbs import matrix_to_axis_angle

    u, _, vt = np.linalg.svd(mean)
    d = np.sign(np.linalg.det(u @ vt))  # a reflection is not a rotation: flip the last axis
    u[..., :, -1] *= d[..., None]
    return matrix_to_axis_angle(torch.as_tensor(u @ vt)).reshape(len(mean), -1).numpy()


def smooth_track(params: dict[str, np.ndarray], sigma: float = 2.0, hand_axis_angle: bool = True) -> dict[str, np.ndarray]:
    """A track's parameters per frame (SMPL-X names, (T, n) each) -> smoothed over frames with a Gaussian of
    `sigma` frames (2 measured best on the synthetic clips; see docs/video.md). hand_axis_angle: the hand poses
    are 45 axis-angle values (else PCA coefficients, averaged linearly). `betas` become the track's median."""
    out = {}
    for name, value in params.items():
        value = np.asarray(value, dtype=np.float64)
        if name == "betas":
            out[name] = np.repeat(np.median(value, 0, keepdims=True), len(value), 0)
        elif name in ROTATION_PARAMS or (hand_axis_angle and name in ("left_hand_pose", "right_hand_pose")):
            out[name] = smooth_rotations(value, sigma)
        else:  # transl, expression, hand PCA coefficients
            out[name] = gaussian_weights(len(value), sigma) @ value
    return out
