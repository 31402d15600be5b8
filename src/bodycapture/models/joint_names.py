"""Joint orders and kinematic trees of the SMPL family.

Orders follow the published model files and the `smplx` package's documentation (SMPL-X: Pavlakos et
al. 2019; MANO: Romero et al. 2017; FLAME: Li et al. 2017). Hands are in MANO order: index, middle,
pinky, ring, thumb, three joints each from the palm outwards.
"""

from __future__ import annotations

BODY_JOINTS = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
]  # fmt: skip
"""The 22 body joints shared by SMPL, SMPL-H and SMPL-X (pelvis first)."""

_FINGERS = ["index", "middle", "pinky", "ring", "thumb"]
HAND_JOINTS = [f"{finger}{k}" for finger in _FINGERS for k in (1, 2, 3)]
"""The 15 finger joints of one hand in MANO order (no wrist)."""

SMPL_JOINTS = BODY_JOINTS + ["left_hand", "right_hand"]
SMPLH_JOINTS = BODY_JOINTS + [f"left_{j}" for j in HAND_JOINTS] + [f"right_{j}" for j in HAND_JOINTS]
SMPLX_JOINTS = (
    BODY_JOINTS
    + ["jaw", "left_eye_smplhf", "right_eye_smplhf"]
    + [f"left_{j}" for j in HAND_JOINTS]
    + [f"right_{j}" for j in HAND_JOINTS]
)
MANO_JOINTS = ["wrist"] + HAND_JOINTS
FLAME_JOINTS = ["global", "neck", "jaw", "left_eye", "right_eye"]

_BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]
_HAND_PARENTS = [-1, 0, 1, -1, 3, 4, -1, 6, 7, -1, 9, 10, -1, 12, 13]  # -1: the wrist


def _hand_parents(wrist: int, first: int) -> list[int]:
    """Parents of 15 finger joints numbered from `first`, attached to joint `wrist`."""
    return [wrist if p < 0 else first + p for p in _HAND_PARENTS]


SMPL_PARENTS = _BODY_PARENTS + [20, 21]
SMPLH_PARENTS = _BODY_PARENTS + _hand_parents(20, 22) + _hand_parents(21, 37)
SMPLX_PARENTS = _BODY_PARENTS + [15, 15, 15] + _hand_parents(20, 25) + _hand_parents(21, 40)
MANO_PARENTS = [-1] + _hand_parents(0, 1)
FLAME_PARENTS = [-1, 0, 1, 1, 1]

JOINT_NAMES = {
    "smpl": SMPL_JOINTS,
    "smplh": SMPLH_JOINTS,
    "smplx": SMPLX_JOINTS,
    "mano": MANO_JOINTS,
    "flame": FLAME_JOINTS,
}
PARENTS = {
    "smpl": SMPL_PARENTS,
    "smplh": SMPLH_PARENTS,
    "smplx": SMPLX_PARENTS,
    "mano": MANO_PARENTS,
    "flame": FLAME_PARENTS,
}
