"""The bundled detector: MediaPipe Holistic (0.10.21, whose wheel carries its models, so it runs offline),
converted into our OpenPose-style layout.

MediaPipe gives 33 body, 2 x 21 hand and 468 face landmarks for one person per image. We map them:
- body: BODY_25 from the 33 pose points; the neck and mid-hip (which MediaPipe lacks) are midpoints of
  the shoulders and hips; the small toes have no counterpart and stay undetected;
- hands: MediaPipe's 21 hand points are in OpenPose's order already;
- face: the widely used 468 -> iBUG-68 subset.
Confidences are calibrated (tools/calibrate_detector.py): the fitter weights squared residuals by
confidence^2, so a confidence proportional to 1 / the detector's measured error scale makes the data
term a weighted least squares. Body points map MediaPipe's visibility through a measured table; hand and
face points (no per-point score in MediaPipe) get their group's value. Points outside the image are
dropped, as OpenPose never reports them.
Only `model_complexity=1` works offline (the lite and heavy pose models are downloaded at run time).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .layout import BODY, BODY_25, CONTOUR, FACE, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND
from .types import ImageKeypoints, KeypointFileError, midpoint

__all__ = ["MediaPipeDetector", "detect", "read_image", "MEDIAPIPE_TO_IBUG68"]

log = logging.getLogger(__name__)

# MediaPipe FaceMesh index of each iBUG-68 point (the subset in common use).
MEDIAPIPE_TO_IBUG68 = [
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 397, 361, 323, 454, 356,  # contour 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
]  # fmt: skip

# BODY_25 name -> MediaPipe pose landmark index (None: derived or missing).
_POSE_TO_BODY25 = {
    "Nose": 0, "RShoulder": 12, "RElbow": 14, "RWrist": 16, "LShoulder": 11, "LElbow": 13, "LWrist": 15,
    "RHip": 24, "RKnee": 26, "RAnkle": 28, "LHip": 23, "LKnee": 25, "LAnkle": 27, "REye": 5, "LEye": 2,
    "REar": 8, "LEar": 7, "LBigToe": 31, "LHeel": 29, "RBigToe": 32, "RHeel": 30,
}  # fmt: skip
# Measured by tools/calibrate_detector.py on 120 renders (docs/detector_calibration.json): body points by
# visibility (at the centres of VISIBILITY_BINS), hands and face per group (capped at the best body value).
CALIBRATION = {
    "visibility": [0.15, 0.45, 0.7, 0.85, 0.925, 0.975],
    "body_confidence": [0.27, 0.41, 0.56, 0.63, 0.78, 0.85],
    "hands": 0.85,
    "face": 0.85,
}
VISIBILITY_BINS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 1.0)  # MediaPipe visibility bins used by the calibration
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, with its EXIF orientation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise KeypointFileError(path, "no such image file")
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise KeypointFileError(path, f"not a readable image ({err})") from None


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ code prints warnings straight to file descriptor 2; hide them unless -vv."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import mediapipe
    except ImportError:
        raise ImportError(
            "the keypoint detector needs MediaPipe: pip install mediapipe==0.10.21 "
            "(or reinstall bodycapture, which depends on it)"
        ) from None
    return mediapipe


def _landmarks(lms, width: int, height: int) -> np.ndarray:
    """MediaPipe normalised landmarks -> (N, 3) pixel x, y and visibility (1 where not given)."""
    return np.array([[lm.x * width, lm.y * height, lm.visibility if lm.HasField("visibility") else 1.0]
                     for lm in lms.landmark])


def calibrate(points: np.ndarray) -> np.ndarray:
    """Raw confidences (body: MediaPipe visibility; hands, face: 1 where detected) -> calibrated ones:
    proportional to 1 / the detector's measured error scale (tools/calibrate_detector.py)."""
    out = points.copy()
    vis = out[..., BODY, 2]
    conf = np.interp(vis, CALIBRATION["visibility"], CALIBRATION["body_confidence"])
    out[..., BODY, 2] = np.where(vis > 0, conf, 0.0)
    for group, idx in (("hands", np.r_[LEFT_HAND, RIGHT_HAND]), ("face", np.r_[FACE, CONTOUR])):
        out[..., idx, 2] = np.where(out[..., idx, 2] > 0, CALIBRATION[group], 0.0)
    return out


def convert(pose, left_hand, right_hand, face, world, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
    """MediaPipe landmark arrays in pixels (pose (33, 3) with visibility; hands (21, 2+); face (468+, 2+);
    world (33, 4); any may be None) -> our (135, 3) keypoints with raw confidences (body: visibility;
    hands, face: 1) and (25, 4) world BODY_25 points."""
    out = np.zeros((NUM_KEYPOINTS, 3))
    if pose is not None:
        for name, k in _POSE_TO_BODY25.items():
            out[BODY_25.index(name)] = pose[k, :3]
        out[BODY_25.index("Neck")] = midpoint(out, BODY_25.index("RShoulder"), BODY_25.index("LShoulder"))
        out[BODY_25.index("MidHip")] = midpoint(out, BODY_25.index("RHip"), BODY_25.index("LHip"))
    for hand, idx in ((left_hand, LEFT_HAND), (right_hand, RIGHT_HAND)):
        if hand is not None:
            out[idx, :2] = hand[:, :2]
            out[idx, 2] = 1.0  # detected; calibrate() turns this into a confidence
    if face is not None:
        pts = face[MEDIAPIPE_TO_IBUG68, :2]
        out[CONTOUR, :2], out[FACE, :2] = pts[:17], pts[17:]
        out[np.r_[CONTOUR, FACE], 2] = 1.0
    outside = (out[:, 0] < 0) | (out[:, 0] > width) | (out[:, 1] < 0) | (out[:, 1] > height)
    out[outside] = 0.0
    world25 = None
    if world is not None:
        world25 = np.zeros((25, 4))
        for name, k in _POSE_TO_BODY25.items():
            world25[BODY_25.index(name)] = world[k]
        for name, (a, b) in {"Neck": ("RShoulder", "LShoulder"), "MidHip": ("RHip", "LHip")}.items():
            pa, pb = world25[BODY_25.index(a)], world25[BODY_25.index(b)]
            world25[BODY_25.index(name)] = [*((pa[:3] + pb[:3]) / 2), min(pa[3], pb[3])]
    return out, world25


class MediaPipeDetector:
    """MediaPipe Holistic on still images, one person per image. Reuse one detector for many images:
    creating it costs about 0.1-0.4 s, each image then about 40 ms at 640 x 480 on 2 CPU cores."""

    def __init__(self, min_detection_confidence: float = 0.5, refine_face: bool = False,
                 raw_visibility: bool = False):
        self.min_detection_confidence = min_detection_confidence
        self.refine_face = refine_face
        self.raw_visibility = raw_visibility  # confidences = MediaPipe's visibility (for calibrating)
        self._holistic = None

    def _get(self):
        if self._holistic is None:
            mp = _import_mediapipe()
            with _native_stderr_silenced():
                self._holistic = mp.solutions.holistic.Holistic(
                    static_image_mode=True,
                    model_complexity=1,  # the only pose model in the wheel
                    refine_face_landmarks=self.refine_face,
                    min_detection_confidence=self.min_detection_confidence,
                )
        return self._holistic

    def __call__(self, image: np.ndarray | str | Path) -> ImageKeypoints:
        source = str(image) if isinstance(image, (str, Path)) else "array"
        if isinstance(image, (str, Path)):
            image = read_image(image)
        image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        height, width = image.shape[:2]
        holistic = self._get()
        with _native_stderr_silenced():
            result = holistic.process(image)
        if result.pose_landmarks is None:
            log.info("%s: no person found", source)
            return ImageKeypoints.empty((height, width), source)

        def pts(lms):
            return None if lms is None else _landmarks(lms, width, height)

        world = None
        if result.pose_world_landmarks is not None:
            world = np.array([[lm.x, lm.y, lm.z, lm.visibility] for lm in result.pose_world_landmarks.landmark])
        points, world25 = convert(pts(result.pose_landmarks), pts(result.left_hand_landmarks),
                                  pts(result.right_hand_landmarks), pts(result.face_landmarks), world, width, height)
        if not self.raw_visibility:
            points = calibrate(points)
        return ImageKeypoints(points[None], (height, width), None if world25 is None else world25[None], source)

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def detect(image: np.ndarray | str | Path, detector: MediaPipeDetector | None = None) -> ImageKeypoints:
    """Detect the keypoints of the person in an image (array or file); no person gives 0 people."""
    if detector is not None:
        return detector(image)
    with MediaPipeDetector() as det:
        return det(image)
