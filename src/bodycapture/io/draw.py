"""Drawing keypoint skeletons on images (for `bodycapture detect --show` and overlays)."""

from __future__ import annotations

import numpy as np

from ..keypoints.layout import BODY_25, CONTOUR, FACE, LEFT_HAND, RIGHT_HAND
from .images import scaled_to_fit

__all__ = ["draw_keypoints", "LIMBS", "HAND_BONES"]

_B = BODY_25.index
LIMBS = [  # BODY_25 bones, as OpenPose draws them
    ("Neck", "Nose"), ("Neck", "RShoulder"), ("RShoulder", "RElbow"), ("RElbow", "RWrist"), ("Neck", "LShoulder"),
    ("LShoulder", "LElbow"), ("LElbow", "LWrist"), ("Neck", "MidHip"), ("MidHip", "RHip"), ("RHip", "RKnee"),
    ("RKnee", "RAnkle"), ("MidHip", "LHip"), ("LHip", "LKnee"), ("LKnee", "LAnkle"), ("Nose", "REye"),
    ("REye", "REar"), ("Nose", "LEye"), ("LEye", "LEar"), ("LAnkle", "LBigToe"), ("LBigToe", "LSmallToe"),
    ("LAnkle", "LHeel"), ("RAnkle", "RBigToe"), ("RBigToe", "RSmallToe"), ("RAnkle", "RHeel"),
]  # fmt: skip
HAND_BONES = [(0, 1 + 4 * f) for f in range(5)] + [(1 + 4 * f + k, 2 + 4 * f + k) for f in range(5) for k in range(3)]


def draw_keypoints(image: np.ndarray, points: np.ndarray, min_confidence: float = 0.05,
                   max_side: int | None = None):
    """A PIL image: `image` (H, W, 3) uint8 with the skeletons of `points` (P, 135, 3) drawn on it.
    Right side in red, left in blue, hands in green / cyan, face in white. max_side: a larger image is drawn
    scaled down to this many pixels on its longer side (the points with it)."""
    from PIL import Image, ImageDraw

    image = np.asarray(image, dtype=np.uint8)
    if max_side is not None:
        h, w = image.shape[:2]
        image = scaled_to_fit(image, max_side)
        points = np.asarray(points, dtype=np.float64) * np.array([image.shape[1] / w, image.shape[0] / h, 1.0])
    img = Image.fromarray(image)
    draw = ImageDraw.Draw(img)
    width = max(1, round(max(img.size) / 250))

    def line(p, q, colour):
        if p[2] > min_confidence and q[2] > min_confidence:
            draw.line([tuple(p[:2]), tuple(q[:2])], fill=colour, width=width)

    def dot(p, colour, r):
        if p[2] > min_confidence:
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=colour)

    for person in points:
        for a, b in LIMBS:
            colour = (230, 40, 40) if "R" in (a[0], b[0]) else (40, 90, 230) if "L" in (a[0], b[0]) else (240, 200, 0)
            line(person[_B(a)], person[_B(b)], colour)
        for idx, colour in ((LEFT_HAND, (0, 220, 220)), (RIGHT_HAND, (40, 200, 40))):
            for a, b in HAND_BONES:
                line(person[idx[a]], person[idx[b]], colour)
        for k in np.concatenate([FACE, CONTOUR]):
            dot(person[k], (255, 255, 255), max(1, width // 2))
        for k in range(25):
            dot(person[k], (255, 255, 0), width + 1)
    return img
