"""Shared test helpers: small random models in the official layouts, written as `.npz` and as
chumpy-style `.pkl` (with stand-in classes named like chumpy's and scipy's, so neither is needed)."""

from __future__ import annotations

import copyreg
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bodycapture.models import BodyModel, model_data_from_arrays
from bodycapture.models.random_model import random_model_arrays

FAMILIES = ["smpl", "smplh", "smplx", "mano", "flame"]

# torch on one thread, as `bodycapture fit` runs its fits (--threads 1): the fits tested are those users get
# (a fit follows the rounding, which changes with the thread count), and the tests do not oversubscribe the
# two cores while a `bodycapture` process they start runs beside them
torch.set_num_threads(1)


def make_arrays(family: str = "smplx", **kwargs) -> dict[str, np.ndarray]:
    defaults = {"num_vertices": 120, "num_shape": 12, "num_expression": 6}
    if family in ("smplx", "flame"):
        defaults["num_shape"] = 300  # the v1.1 / FLAME layout: expression columns start at 300
    defaults.update(kwargs)
    return random_model_arrays(family, **defaults)


def make_model(family: str = "smplx", dtype=torch.float64, arrays=None, **options) -> BodyModel:
    arrays = make_arrays(family) if arrays is None else arrays
    return BodyModel(model_data_from_arrays(arrays, family=family), dtype=dtype, **options)


def random_params(model: BodyModel, batch: int, seed: int = 0, scale: float = 0.4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dtype = model.v_template.dtype
    return {
        name: (torch.randn(batch, n, generator=g, dtype=torch.float64) * scale).to(dtype)
        for name, n in model.parameter_sizes().items()
    }


# ---------------------------------------------------------------------------------------------------
# chumpy-style pickles


def _fake_class(module: str, name: str) -> type:
    cls = type(name, (), {"__module__": module})
    cls.__qualname__ = name
    return cls


class FakeModules:
    """Registers fake `chumpy.ch` and `scipy.sparse.<mod>` modules so that pickle can name classes
    exactly as the official files do; removed again afterwards."""

    def __init__(self, sparse_module: str):
        self.names = ["chumpy", "chumpy.ch", "scipy", "scipy.sparse", sparse_module]
        self.sparse_module = sparse_module

    def __enter__(self):
        self.saved = {n: sys.modules.get(n) for n in self.names}
        mods = {n: types.ModuleType(n) for n in self.names}
        self.Ch = _fake_class("chumpy.ch", "Ch")
        self.csc = _fake_class(self.sparse_module, "csc_matrix")
        mods["chumpy.ch"].Ch = self.Ch
        setattr(mods[self.sparse_module], "csc_matrix", self.csc)
        sys.modules.update(mods)
        return self

    def __exit__(self, *exc):
        for n, m in self.saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def dense_to_csc_state(dense: np.ndarray) -> dict:
    cols = [np.nonzero(dense[:, c])[0] for c in range(dense.shape[1])]
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
    indices = np.concatenate(cols).astype(np.int32)
    data = np.concatenate([dense[c, i] for i, c in enumerate(cols)])
    return {"_shape": dense.shape, "data": data, "indices": indices, "indptr": indptr, "maxprint": 50}


def write_chumpy_pkl(
    path: Path,
    arrays: dict,
    chumpy_keys=("shapedirs", "v_template", "J"),
    sparse_keys=("J_regressor",),
    sparse_module="scipy.sparse.csc",
    python2_style=True,
) -> Path:
    """Write `arrays` as the official pickles are: chumpy `Ch` objects holding their array in `x`,
    scipy `csc_matrix` for sparse keys, protocol 2. python2_style uses copy_reg._reconstructor as
    Python 2's pickler did for new-style classes."""
    with FakeModules(sparse_module) as fake:
        def wrap(cls, state):
            obj = cls.__new__(cls)
            obj.__dict__.update(state)
            if python2_style:
                cls.__reduce_ex__ = lambda self, proto: (copyreg._reconstructor, (cls, object, None), self.__dict__)
            return obj

        out = {}
        for key, value in arrays.items():
            if key in chumpy_keys:
                out[key] = wrap(fake.Ch, {"x": np.asarray(value), "_dirty_vars": set()})
            elif key in sparse_keys:
                out[key] = wrap(fake.csc, dense_to_csc_state(np.asarray(value)))
            else:
                out[key] = value
        out["bs_style"] = "lbs"
        out["bs_type"] = "lrotmin"
        with open(path, "wb") as fh:
            pickle.dump(out, fh, protocol=2)
    return path


@pytest.fixture
def write_pkl():
    return write_chumpy_pkl


def quick_config():
    """A FitConfig with 3 L-BFGS iterations per stage and no collision term: for tests of what happens
    around a fit (writing, reports), not of the fit itself."""
    from bodycapture.fitting import FitConfig
    from bodycapture.fitting.lbfgs import LBFGSSettings

    config = FitConfig(interpenetration=False)
    config.optimizer = LBFGSSettings(max_iter=3)
    config.camera_optimizer = LBFGSSettings(max_iter=3)
    return config
