"""The SMPL-family body-model layer: rotations and skinning, model files, the model zoo.

Names are imported on first use (PEP 562): reading a model file (`files`, `zoo`) does not import torch,
so `load_model` can read the file while torch is being imported (zoo.py)."""

from ..lazy import lazy_names

_LAZY = {
    "BodyModel": ".body_model", "BodyOutput": ".body_model",
    "FAMILIES": ".families", "Family": ".families", "get_family": ".families",
    "ModelData": ".files", "model_data_from_arrays": ".files", "read_model_file": ".files",
    "available_models": ".zoo", "find_model_file": ".zoo", "load_model": ".zoo",
}  # fmt: skip

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
