"""Our keypoint layout: the one SMPLify-X fits to (Pavlakos et al. 2019, section 3 of its code).

    0-24    OpenPose BODY_25
    25-45   left hand, OpenPose hand order (wrist, then thumb, index, middle, ring, pinky, base to tip)
    46-66   right hand
    67-117  face: OpenPose / iBUG-68 points 17-67 (brows, nose, eyes, mouth)
    118-134 face contour: iBUG points 0-16 (jaw line), used only when the face contour is enabled

Every keypoint container in bodycapture stores all 135 points; the contour is switched on or off by
weight. SMPLify-X ignores the neck and both hips of BODY_25 in its data term (their definitions differ
from SMPL's joints) but still uses the hips to initialise the camera.
"""

from __future__ import annotations

import numpy as np

BODY_25 = [
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip",
    "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe",
    "LHeel", "RBigToe", "RSmallToe", "RHeel",
]  # fmt: skip
HAND_21 = ["wrist"] + [f"{finger}{k}" for finger in ("thumb", "index", "middle", "ring", "pinky") for k in (1, 2, 3, 4)]
FACE_51 = [f"face{k}" for k in range(17, 68)]  # iBUG-68 numbering
CONTOUR_17 = [f"face{k}" for k in range(17)]

NAMES = BODY_25 + [f"left_{n}" for n in HAND_21] + [f"right_{n}" for n in HAND_21] + FACE_51 + CONTOUR_17
NUM_KEYPOINTS = len(NAMES)  # 135

BODY = np.arange(0, 25)
LEFT_HAND = np.arange(25, 46)
RIGHT_HAND = np.arange(46, 67)
FACE = np.arange(67, 118)
CONTOUR = np.arange(118, 135)
GROUPS = {"body": BODY, "left_hand": LEFT_HAND, "right_hand": RIGHT_HAND, "face": FACE, "contour": CONTOUR}
# The groups that residuals and scores are reported for (both hands together, the contour left out).
REPORT_GROUPS = {"body": BODY, "hands": np.r_[LEFT_HAND, RIGHT_HAND], "face": FACE}

# BODY_25 points SMPLify-X gives zero weight in the data term (`joints_to_ign: [1, 9, 12]`).
IGNORED_BY_DEFAULT = np.array([BODY_25.index(n) for n in ("Neck", "RHip", "LHip")])
# The torso points its camera initialisation uses (`init_joints_idxs`: RHip, LHip, RShoulder, LShoulder).
CAMERA_INIT = np.array([BODY_25.index(n) for n in ("RHip", "LHip", "RShoulder", "LShoulder")])

# iBUG-68 left/right pairs (subject's right first); midline points map to themselves.
IBUG_PAIRS = [(k, 16 - k) for k in range(8)] + [
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22), (31, 35), (32, 34), (36, 45), (37, 44), (38, 43),
    (39, 42), (40, 47), (41, 46), (48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65),
]  # fmt: skip


def ibug_index(k: int) -> int:
    """Our index of iBUG-68 point k (0-16 are the contour)."""
    return int(CONTOUR[k]) if k < 17 else int(FACE[k - 17])


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_KEYPOINTS)
    for i, name in enumerate(BODY_25):
        if name[0] in "RL" and name[1].isupper():  # RShoulder <-> LShoulder; Nose, Neck, MidHip stay
            perm[i] = BODY_25.index({"R": "L", "L": "R"}[name[0]] + name[1:])
    perm[LEFT_HAND], perm[RIGHT_HAND] = RIGHT_HAND, LEFT_HAND
    for a, b in IBUG_PAIRS:
        perm[ibug_index(a)], perm[ibug_index(b)] = ibug_index(b), ibug_index(a)
    return perm


FLIP = _flip_permutation()
"""FLIP[i] is the keypoint that i becomes when the image is mirrored (an involution)."""


def flip_keypoints(keypoints: np.ndarray, image_width: float) -> np.ndarray:
    """Mirror keypoints (..., 135, 3) horizontally in an image of the given width (pixel centres at +0.5)."""
    out = keypoints[..., FLIP, :].copy()
    seen = out[..., 2] > 0
    out[..., 0] = np.where(seen, image_width - out[..., 0], 0.0)
    return out

MIN_BODY_POINTS = 3  # a person needs this many detected BODY_25 points to be fitted at all


def fittable(points):
    """Whether each person's keypoints (..., 135, 3) (numpy or torch) have at least MIN_BODY_POINTS detected
    BODY_25 points: (...,) bool."""
    return (points[..., :25, 2] > 0).sum(-1) >= MIN_BODY_POINTS
