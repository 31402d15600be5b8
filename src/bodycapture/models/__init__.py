"""The SMPL-family body-model layer: rotations and skinning, model files, the model zoo.

Names are imported on first use (PEP 562): reading a model file (`files`, `zoo`) does not import torch,
so `load_model` can read the file while torch is being imported (zoo.py)."""

from importlib import import_module

_LAZY = {
    "BodyModel": ".body_model", "BodyOutput": ".body_model",
    "FAMILIES": ".families", "Family": ".families", "get_family": ".families",
    "ModelData": ".files", "model_data_from_arrays": ".files", "read_model_file": ".files",
    "available_models": ".zoo", "find_model_file": ".zoo", "load_model": ".zoo",
}  # fmt: skip

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
