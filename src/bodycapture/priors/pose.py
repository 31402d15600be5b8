"""The body-pose prior interface used by the fitter, and the plain L2 prior.

A prior owns a latent parameterisation of the body pose: the fitter optimises the latent, `decode` turns
it into axis-angle body pose, and `penalty` is the prior's energy (weighted by the schedule's squared
body-pose weight). SMPLify-X uses VPoser's 32-D latent with penalty |z|^2 (the VPoser issue plugs it in
here); the L2 prior's latent is the body pose itself, penalised towards zero (the mean pose).
"""

from __future__ import annotations

import torch
from torch import Tensor


class PosePrior:
    """Interface: latent (B, latent_size) -> body pose (B, 3 * num_body_joints)."""

    name = "none"
    latent_size: int

    def decode(self, latent: Tensor) -> Tensor:
        raise NotImplementedError

    def decode_rotations(self, latent: Tensor) -> Tensor:
        """What the fitter hands the body model: axis-angle (B, 3N), or rotation matrices (B, N, 3, 3)
        where the prior produces those natively (VPoser: no round trip through axis-angle)."""
        return self.decode(latent)

    def penalty(self, latent: Tensor) -> Tensor:
        """Prior energy per item (B,)."""
        raise NotImplementedError

    def encode(self, body_pose: Tensor) -> Tensor:
        """(B, 3N) axis-angle body pose -> a latent that decodes to (about) it: to start a fit from a pose."""
        return body_pose.reshape(body_pose.shape[0], -1)

    def init_latent(self, batch: int, dtype=torch.float32, device=None) -> Tensor:
        """The latent of the prior's mean pose (the fit's starting pose)."""
        return torch.zeros(batch, self.latent_size, dtype=dtype, device=device)


class L2PosePrior(PosePrior):
    """Squared norm of the axis-angle body pose: (B, n) -> (B,)."""

    name = "l2"

    def __init__(self, body_pose_size: int):
        self.latent_size = body_pose_size

    def decode(self, latent: Tensor) -> Tensor:
        return latent

    def penalty(self, latent: Tensor) -> Tensor:
        return latent.square().sum(-1)
