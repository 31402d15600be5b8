"""The SMPL-family body-model layer: rotations and skinning, model files, the model zoo."""

from .body_model import BodyModel, BodyOutput
from .families import FAMILIES, Family, get_family
from .files import ModelData, model_data_from_arrays, read_model_file
from .zoo import available_models, find_model_file, load_model

__all__ = [
    "BodyModel",
    "BodyOutput",
    "FAMILIES",
    "Family",
    "get_family",
    "ModelData",
    "model_data_from_arrays",
    "read_model_file",
    "available_models",
    "find_model_file",
    "load_model",
]
