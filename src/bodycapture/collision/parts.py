"""Body parts of a mesh from its skinning weights, and which part pairs may collide.

SMPLify-X filters colliding pairs with `smplx_parts_segm.pkl` (a part per face plus its parent part,
downloaded from the SMPL-X site). We derive the same information from any model's skinning weights, so
the filter works for the open model and for every official file: a face belongs to the joint with the
largest summed weight over its three corners. A pair is ignored when both faces are on the same part,
when one part is the other's parent, or when the part pair touches by design (`DEFAULT_IGNORED_PAIRS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.joint_names import SMPLX_JOINTS

__all__ = ["PartFilter", "face_parts", "DEFAULT_IGNORED_PAIRS"]

DEFAULT_IGNORED_PAIRS: tuple[tuple[str, str], ...] = (
    ("spine3", "left_shoulder"), ("spine3", "right_shoulder"),
    ("spine2", "left_shoulder"), ("spine2", "right_shoulder"),
    ("left_hip", "right_hip"), ("neck", "jaw"),
)  # fmt: skip
"""SMPLify-X's `ign_part_pairs` ["9,16", "9,17", "6,16", "6,17", "1,2", "12,22"], by SMPL-X joint name
(the upper arms against the chest, the two thighs, the neck against the jaw)."""


def face_parts(lbs_weights: Tensor, faces: Tensor) -> Tensor:
    """(F,) the dominant joint of each face. lbs_weights: (V, J); faces: (F, 3)."""
    return lbs_weights[faces.long()].sum(1).argmax(1)


@dataclass
class PartFilter:
    """face_part (F,) long and allowed (K, K) bool: which part pairs count as collisions."""

    face_part: Tensor
    allowed: Tensor

    @classmethod
    def from_skinning(
        cls,
        lbs_weights: Tensor,
        faces: Tensor,
        parents: list[int] | Tensor,
        joint_names: list[str] | None = None,
        ignored_pairs: tuple[tuple[str, str], ...] | list = DEFAULT_IGNORED_PAIRS,
    ) -> "PartFilter":
        """Parts from skinning weights (V, J); same part, parent-child and `ignored_pairs` are not collisions.

        ignored_pairs: joint-name pairs, or SMPL-X joint-id pairs as in SMPLify-X's configs (9 = spine3,
        16 = left_shoulder, ...); joints this model lacks are skipped, so the SMPL-X defaults also work
        for SMPL or SMPL-H (whose joint 22 is a hand, not the jaw).
        """
        dev = lbs_weights.device
        parents = torch.as_tensor(parents, dtype=torch.long, device=dev)
        K = lbs_weights.shape[1]
        allowed = ~torch.eye(K, dtype=torch.bool, device=dev)
        child = torch.nonzero(parents >= 0).flatten()
        allowed[child, parents[child]] = False
        allowed[parents[child], child] = False
        names = list(joint_names or [])
        for pair in ignored_pairs:
            # numbers are SMPL-X joint ids (SMPLify-X's "9,16" form): read them as SMPL-X joint names
            a, b = (SMPLX_JOINTS[p] if not isinstance(p, str) and 0 <= int(p) < len(SMPLX_JOINTS) else p
                    for p in pair)
            if not (isinstance(a, str) and isinstance(b, str) and a in names and b in names):
                continue  # a joint this model does not have
            a, b = names.index(a), names.index(b)
            allowed[a, b] = allowed[b, a] = False
        return cls(face_parts(lbs_weights, faces.to(dev)), allowed)

    @classmethod
    def for_model(cls, model, ignored_pairs=DEFAULT_IGNORED_PAIRS) -> "PartFilter":
        """The filter of a `BodyModel` (parts from its skinning weights, parents from its tree)."""
        return cls.from_skinning(model.lbs_weights, model.faces_tensor, model.parents, model.joint_names,
                                 ignored_pairs)

    def to(self, device) -> "PartFilter":
        return PartFilter(self.face_part.to(device), self.allowed.to(device))
