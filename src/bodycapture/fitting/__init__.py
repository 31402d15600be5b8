"""SMPLify-X fitting: camera, objective, schedule, batched L-BFGS, the fitter."""

from .fitter import FitResult, fit
from .schedule import FitConfig, Stage, load_config

__all__ = ["FitResult", "fit", "FitConfig", "Stage", "load_config"]
