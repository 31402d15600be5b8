"""SMPLify's bending prior on elbows and knees (Bogo et al. 2016; as used by SMPLify-X).

Sum of exp(2 s_i theta_i) over four pose values: the left/right elbow rotations about y and the knee
rotations about x, each with the sign s_i that makes only unnatural bending (hyperextension) costly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.lbs import matrix_to_axis_angle_below_pi

# (index into the 63-D SMPL-X / SMPL-H body pose, sign): left elbow y, right elbow y, left knee x, right knee x
BENDING_TERMS = ((52, 1.0), (55, -1.0), (9, -1.0), (12, -1.0))


def bending_prior(body_pose: Tensor) -> Tensor:
    """(B, 63 or 69) axis-angle body pose, or its rotations (B, N, 3, 3) -> (B,) bending energy (weight
    applied by the caller). From rotations, only the four joints involved are converted to axis-angle (by the
    short formula valid below a half turn: elbows and knees do not turn that far)."""
    idx = [i for i, _ in BENDING_TERMS]
    sign = torch.tensor([s for _, s in BENDING_TERMS], dtype=body_pose.dtype, device=body_pose.device)
    if body_pose.dim() == 4:  # the four joints' axis-angle (B, 4, 3), flattened; value k of joint j is 3 j + k
        values = matrix_to_axis_angle_below_pi(body_pose[:, [i // 3 for i in idx]]).flatten(1)
        picked = values[:, [3 * j + i % 3 for j, i in enumerate(idx)]]
    else:
        picked = body_pose[:, idx]
    return torch.exp(2 * sign * picked).sum(-1)
