"""The perspective camera of the fit, its focal length, and the initial body translation.

OpenCV convention, as SMPLify-X: the camera looks along +z, image x to the right, y down. The camera
rotation is the identity (SMPLify-X keeps it fixed): the body's `global_orient` and `transl` place the
body in front of it, so `transl` is SMPLify-X's `camera_translation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..keypoints.layout import BODY_25

__all__ = ["Camera", "choose_focal", "focal_from_exif", "default_focal", "initial_translation", "SMPLIFYX_FOCAL"]

SMPLIFYX_FOCAL = 5000.0  # SMPLify-X's fixed focal length in pixels (for compatibility: --focal 5000)


@dataclass
class Camera:
    """Pinhole cameras, one per item: focal (B, 2) fx, fy in pixels; center (B, 2) principal point."""

    focal: Tensor
    center: Tensor

    def project(self, points: Tensor) -> Tensor:
        """(B, N, 3) camera-space points -> (B, N, 2) pixels. Points at or behind the camera are kept
        finite (depth clamped to 1 mm) so that a bad iterate never produces NaN."""
        z = points[..., 2:3].clamp_min(1e-3)
        return points[..., :2] / z * self.focal[:, None] + self.center[:, None]


def default_focal(height: float, width: float) -> float:
    """Focal length in pixels when nothing better is known: the image diagonal, i.e. a 53-degree
    diagonal field of view, typical of phone and consumer cameras. SMPLify-X's 5000 px corresponds to a
    telephoto lens for usual image sizes and flattens depth; it stays available as an option."""
    return float((height**2 + width**2) ** 0.5)


def focal_from_exif(path: str | Path, width: int, height: int) -> float | None:
    """Focal length in pixels from a photo's EXIF 35 mm-equivalent focal length, if present and sane.

    f_px = f_35mm / 36 mm x max(width, height) (the 35 mm frame is 36 mm wide along its long side).
    A missing, non-numeric, zero, x/0 or absurd value (outside 1-5000 mm) counts as absent."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            exif = img.getexif()
            f35 = exif.get_ifd(0x8769).get(0xA405) or exif.get(0xA405)  # FocalLengthIn35mmFilm
        f35 = float(f35) if f35 is not None else None
    except Exception:  # no EXIF, not an image, or a value that is not a number: fall back to the default
        return None
    if f35 is None or not math.isfinite(f35) or not 1.0 <= f35 <= 5000.0:
        return None
    return f35 / 36.0 * max(width, height)


def choose_focal(height: int, width: int, path: str | Path | None = None,
                 focal: float | None = None) -> tuple[float, str]:
    """The one place that decides an image's focal length in pixels: the given value, else the photo's
    EXIF, else the image diagonal. Returns (focal, where it came from: 'given', 'EXIF' or 'diagonal')."""
    if focal is not None:
        focal = float(focal)
        if not math.isfinite(focal) or focal <= 0:
            from ..errors import BodyCaptureError

            raise BodyCaptureError(f"focal length must be a positive number of pixels, got {focal}")
        return focal, "given"
    if path is not None:
        exif = focal_from_exif(path, width, height)
        if exif is not None:
            return exif, "EXIF"
    return default_focal(height, width), "diagonal"


def initial_translation(keypoints: Tensor, model_joints: Tensor, focal: Tensor, center: Tensor) -> Tensor:
    """Body translation (B, 3) from torso lengths by similar triangles, as SMPLify-X's guess_init.

    keypoints: (B, 135, 3) detections; model_joints: (B, 25, 3) the model's BODY_25 points at the mean
    pose, already turned to face the camera. depth = f x (3D torso edge) / (2D torso edge) over the edges
    (LShoulder, LHip) and (RShoulder, RHip); where those are missing, shoulder and hip widths, then a
    default of 3 m. Unlike SMPLify-X (which sets x = y = 0) the pelvis is put on the detected mid-hip
    (or the torso's centre) at that depth, so the camera stage starts aligned.
    """
    b = BODY_25.index
    pairs = [("LShoulder", "LHip"), ("RShoulder", "RHip"), ("LShoulder", "RShoulder"), ("LHip", "RHip")]
    len2d, len3d = [], []
    for i, j in pairs:
        ok = (keypoints[:, b(i), 2] > 0) & (keypoints[:, b(j), 2] > 0)
        len2d.append(torch.where(ok, (keypoints[:, b(i), :2] - keypoints[:, b(j), :2]).norm(dim=-1), 0 * ok))
        len3d.append(torch.where(ok, (model_joints[:, b(i)] - model_joints[:, b(j)]).norm(dim=-1), 0 * ok))
    l2, l3 = torch.stack(len2d, 1), torch.stack(len3d, 1)
    torso2d, torso3d = l2[:, :2].sum(1), l3[:, :2].sum(1)
    width2d, width3d = l2[:, 2:].sum(1), l3[:, 2:].sum(1)
    f = focal.mean(1)
    depth = torch.where(torso2d > 1, f * torso3d / torso2d.clamp_min(1),
                        torch.where(width2d > 1, f * width3d / width2d.clamp_min(1), torch.full_like(f, 3.0)))
    depth = depth.clamp(0.5, 100.0)
    # where to put the pelvis: mid-hip, else the mean of the detected torso points
    torso = torch.tensor([b(n) for n in ("MidHip", "LHip", "RHip", "LShoulder", "RShoulder", "Neck")])
    conf = (keypoints[:, torso, 2] > 0).to(keypoints.dtype)
    anchor2d = (keypoints[:, torso, :2] * conf[..., None]).sum(1) / conf.sum(1, keepdim=True).clamp_min(1)
    anchor3d = (model_joints[:, torso] * conf[..., None]).sum(1) / conf.sum(1, keepdim=True).clamp_min(1)
    mid = keypoints[:, b("MidHip")]
    use_mid = mid[:, 2] > 0
    anchor2d = torch.where(use_mid[:, None], mid[:, :2], anchor2d)
    anchor3d = torch.where(use_mid[:, None], model_joints[:, b("MidHip")], anchor3d)
    xy = (anchor2d - center) * depth[:, None] / focal - anchor3d[:, :2]
    return torch.cat([xy, (depth - anchor3d[:, 2])[:, None]], 1)
