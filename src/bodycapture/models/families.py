"""What distinguishes the members of the SMPL family: joints, pose parameters, shape spaces, file names.

One `Family` per model type. The body-model layer, the file reader and the model zoo all read these
records instead of branching on model names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .joint_names import JOINT_NAMES, PARENTS


@dataclass(frozen=True)
class Family:
    """Static description of one model family.

    pose_parts: the pose parameters in the order they fill the full pose, with their joint counts;
        they cover every joint exactly once, root (`global_orient`) first.
    hand_parts: pose parameters that are hand poses (PCA-able), mapped to the file-key suffix of their
        PCA basis (`hands_components{suffix}`, `hands_mean{suffix}`).
    has_expression: whether shapedirs carries expression columns after the shape columns.
    """

    name: str
    display: str
    pose_parts: tuple[tuple[str, int], ...]
    hand_parts: tuple[tuple[str, str], ...]
    has_expression: bool
    file_prefix: str
    genders: tuple[str, ...]
    default_ext: str
    website: str

    @property
    def joint_names(self) -> list[str]:
        return JOINT_NAMES[self.name]

    @property
    def parents(self) -> list[int]:
        return PARENTS[self.name]

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def part_slices(self) -> dict[str, slice]:
        """Joint index range of every pose parameter, e.g. {'body_pose': slice(1, 22), ...}."""
        out, start = {}, 0
        for name, n in self.pose_parts:
            out[name] = slice(start, start + n)
            start += n
        return out


SMPL = Family(
    name="smpl",
    display="SMPL",
    pose_parts=(("global_orient", 1), ("body_pose", 23)),
    hand_parts=(),
    has_expression=False,
    file_prefix="SMPL",
    genders=("neutral", "male", "female"),
    default_ext="pkl",
    website="https://smpl.is.tue.mpg.de (neutral: https://smplify.is.tue.mpg.de)",
)
SMPLH = Family(
    name="smplh",
    display="SMPL-H",
    pose_parts=(("global_orient", 1), ("body_pose", 21), ("left_hand_pose", 15), ("right_hand_pose", 15)),
    hand_parts=(("left_hand_pose", "l"), ("right_hand_pose", "r")),
    has_expression=False,
    file_prefix="SMPLH",
    genders=("neutral", "male", "female"),
    default_ext="pkl",
    website="https://mano.is.tue.mpg.de",
)
SMPLX = Family(
    name="smplx",
    display="SMPL-X",
    pose_parts=(
        ("global_orient", 1),
        ("body_pose", 21),
        ("jaw_pose", 1),
        ("leye_pose", 1),
        ("reye_pose", 1),
        ("left_hand_pose", 15),
        ("right_hand_pose", 15),
    ),
    hand_parts=(("left_hand_pose", "l"), ("right_hand_pose", "r")),
    has_expression=True,
    file_prefix="SMPLX",
    genders=("neutral", "male", "female"),
    default_ext="npz",
    website="https://smpl-x.is.tue.mpg.de",
)
MANO = Family(
    name="mano",
    display="MANO",
    pose_parts=(("global_orient", 1), ("hand_pose", 15)),
    hand_parts=(("hand_pose", ""),),
    has_expression=False,
    file_prefix="MANO",
    genders=("right", "left"),
    default_ext="pkl",
    website="https://mano.is.tue.mpg.de",
)
FLAME = Family(
    name="flame",
    display="FLAME",
    pose_parts=(("global_orient", 1), ("neck_pose", 1), ("jaw_pose", 1), ("leye_pose", 1), ("reye_pose", 1)),
    hand_parts=(),
    has_expression=True,
    file_prefix="FLAME",
    genders=("neutral", "male", "female"),
    default_ext="pkl",
    website="https://flame.is.tue.mpg.de",
)

FAMILIES: dict[str, Family] = {f.name: f for f in (SMPL, SMPLH, SMPLX, MANO, FLAME)}
_BY_JOINT_COUNT = {f.num_joints: f for f in FAMILIES.values()}

_ALIASES = {"smpl": "smpl", "smplh": "smplh", "smpl+h": "smplh", "smpl-h": "smplh", "smplx": "smplx",
            "smpl-x": "smplx", "mano": "mano", "flame": "flame"}  # fmt: skip


def get_family(name: str) -> Family:
    """The family called `name` (case-insensitive; 'SMPL-X', 'smplx' and 'smpl+h' style spellings)."""
    key = _ALIASES.get(name.lower())
    if key is None:
        raise ValueError(f"unknown model type {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[key]


def family_from_joint_count(num_joints: int) -> Family | None:
    """The family whose kinematic tree has `num_joints` joints, or None."""
    return _BY_JOINT_COUNT.get(num_joints)
