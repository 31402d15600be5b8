"""VPoser: a variational auto-encoder over body poses, used as a learned pose prior (Pavlakos et al.,
"Expressive Body Capture", CVPR 2019, section 3.3; architecture of its public v1 code, as summarised in
our reference notes).

Encoder: 63 axis-angle values -> BatchNorm -> 512 -> LeakyReLU -> BatchNorm -> Dropout -> 512 ->
LeakyReLU -> a 32-D Gaussian (mean, softplus scale). Decoder: 32 -> 512 -> LeakyReLU -> Dropout -> 512 ->
LeakyReLU -> 21 x 6 values -> rotation matrices through the continuous 6-D representation (Zhou et al.,
CVPR 2019). For fitting, the latent z is optimised and |z|^2 is the prior's energy.

Our weights are trained by tools/train_vposer.py on CMU motion capture retargeted to our model; loading
them needs only this module.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..models.lbs import matrix_to_axis_angle, pad_rows
from .pose import PosePrior

__all__ = ["VPoser", "VPoserPrior", "rot6d_to_matrix", "load_vposer", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "data" / "vposer_open.pt"
NUM_JOINTS = 21
LATENT = 32
HIDDEN = 512


def rot6d_to_matrix(x: Tensor) -> Tensor:
    """(..., 6) -> (..., 3, 3): Gram-Schmidt on two 3-vectors; the columns are b1, b2, b1 x b2."""
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = nn.functional.normalize(a1, dim=-1)
    b2 = nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


class VPoser(nn.Module):
    def __init__(self, hidden: int = HIDDEN, latent: int = LATENT, dropout: float = 0.1):
        super().__init__()
        n = NUM_JOINTS * 3
        self.encoder = nn.Sequential(
            nn.BatchNorm1d(n), nn.Linear(n, hidden), nn.LeakyReLU(0.2), nn.BatchNorm1d(hidden), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
        )
        self.mu = nn.Linear(hidden, latent)
        self.scale = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout), nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2), nn.Linear(hidden, NUM_JOINTS * 6),
        )
        self.latent_size = latent

    def encode(self, body_pose: Tensor) -> torch.distributions.Normal:
        """(B, 63) axis-angle -> q(z | pose), a diagonal Gaussian over the 32-D latent."""
        h = self.encoder(body_pose.reshape(body_pose.shape[0], -1))
        return torch.distributions.Normal(self.mu(h), nn.functional.softplus(self.scale(h)) + 1e-6)

    def decode_matrices(self, z: Tensor) -> Tensor:
        """(B, 32) -> (B, 21, 3, 3) joint rotations, each row's the same whatever B is (fewer than MIN_ROWS
        rows are padded: the linear layers would otherwise round them differently, as in models/lbs.py)."""
        x = self.decoder(pad_rows(z))[: z.shape[0]]
        return rot6d_to_matrix(x.reshape(z.shape[0], NUM_JOINTS, 6))

    def decode(self, z: Tensor) -> Tensor:
        """(B, 32) -> (B, 63) axis-angle body pose."""
        return matrix_to_axis_angle(self.decode_matrices(z)).reshape(z.shape[0], -1)

    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """n body poses (n, 63) decoded from z ~ N(0, temperature^2 I)."""
        p = next(self.parameters())
        z = torch.randn(n, self.latent_size, generator=generator, dtype=p.dtype) * temperature
        return self.decode(z.to(p.device))


def load_vposer(path: str | Path | None = None) -> VPoser:
    """The shipped weights (or a file written by tools/train_vposer.py), in eval mode, without gradients."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = VPoser(**state.get("config", {}))
    net.load_state_dict(state["weights"])
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class VPoserPrior(PosePrior):
    """The learned body-pose prior: latent z (B, 32), decoded by VPoser; energy |z|^2."""

    name = "vposer"

    def __init__(self, net: VPoser | None = None, body_pose_size: int = NUM_JOINTS * 3):
        self.net = net if net is not None else load_vposer()
        self.latent_size = self.net.latent_size
        self.padding = body_pose_size - NUM_JOINTS * 3  # SMPL's 23 body joints: its two hand joints stay at rest

    def _follow(self, latent: Tensor) -> None:
        p = next(self.net.parameters())
        if p.dtype != latent.dtype or p.device != latent.device:
            self.net = self.net.to(dtype=latent.dtype, device=latent.device)

    def decode(self, latent: Tensor) -> Tensor:
        self._follow(latent)
        pose = self.net.decode(latent)
        return pose if self.padding <= 0 else torch.cat([pose, pose.new_zeros(pose.shape[0], self.padding)], 1)

    def decode_rotations(self, latent: Tensor) -> Tensor:
        """(B, 32) -> (B, N, 3, 3): the decoder's rotations as they are (SMPL's two hand joints: identity)."""
        self._follow(latent)
        rot = self.net.decode_matrices(latent)
        if self.padding <= 0:
            return rot
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand(rot.shape[0], self.padding // 3, 3, 3)
        return torch.cat([rot, eye], 1)

    def encode(self, body_pose: Tensor) -> Tensor:
        """(B, 63 or more) axis-angle -> the encoder's mean latent (B, 32) (SMPL's two hand joints ignored)."""
        self._follow(body_pose)
        with torch.no_grad():
            return self.net.encode(body_pose[:, : NUM_JOINTS * 3]).mean

    def penalty(self, latent: Tensor) -> Tensor:
        return latent.square().sum(-1)
