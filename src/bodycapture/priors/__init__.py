"""Priors over body-model parameters: the pluggable body-pose prior and the bending prior."""

from .angle import bending_prior
from .pose import L2PosePrior, PosePrior

__all__ = ["bending_prior", "L2PosePrior", "PosePrior"]
