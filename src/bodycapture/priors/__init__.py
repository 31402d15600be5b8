"""Priors over body-model parameters: the pluggable body-pose prior and the bending prior."""

from .angle import bending_prior
from .pose import L2PosePrior, PosePrior


def make_pose_prior(name: str, body_pose_size: int) -> PosePrior:
    """'vposer' (the shipped weights), 'gmm' (the shipped mixture) or 'l2'."""
    if name == "l2":
        return L2PosePrior(body_pose_size)
    if name == "vposer":
        from .vposer import VPoserPrior

        return VPoserPrior(body_pose_size=body_pose_size)
    if name == "gmm":
        from .gmm import GMMPrior

        return GMMPrior(body_pose_size=body_pose_size)
    raise ValueError(f"unknown pose prior {name!r} (use 'vposer', 'gmm' or 'l2')")


__all__ = ["bending_prior", "L2PosePrior", "PosePrior", "make_pose_prior"]
