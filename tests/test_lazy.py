"""Imports made cheap (bodycapture/lazy.py): torch without its tracing modules, as the `bodycapture` command
imports it, computes exactly what a plain `import torch` computes, and the skipped modules load afterwards."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from bodycapture.lazy import torch_without_tracing

# a model posed and differentiated in a fresh interpreter: the vertices and the gradient of their sum of squares
POSE_AND_DIFFERENTIATE = """
import sys
import numpy as np
from bodycapture.lazy import torch_without_tracing
skip = sys.argv[1] == "skip"
if skip:
    with torch_without_tracing():
        import torch
        skipped = [name for name in ("torch._decomp", "torch._refs", "torch._prims") if name in sys.modules]
        assert not skipped, f"imported: {skipped}"
        assert not hasattr(sys.modules["torch._meta_registrations"], "activate_meta")
    assert "torch._meta_registrations" not in sys.modules and not hasattr(torch, "_meta_registrations")
else:
    import torch
torch.set_num_threads(1)
from bodycapture.models import BodyModel, model_data_from_arrays
from bodycapture.models.random_model import random_model_arrays
model = BodyModel(model_data_from_arrays(random_model_arrays("smplx", seed=3)), num_betas=10, num_expression_coeffs=10)
gen = torch.Generator().manual_seed(0)
params = {k: (0.3 * torch.randn(2, n, generator=gen)).requires_grad_(True) for k, n in model.parameter_sizes().items()}
out = model(**params)
out.vertices.square().sum().backward()
np.savez(sys.argv[2], vertices=out.vertices.detach().numpy(), **{k: v.grad.numpy() for k, v in params.items()})
if skip:  # afterwards, the skipped modules load for real (in torch's order), and torch.compile's decompositions
    import torch._meta_registrations as meta
    import torch._decomp  # noqa: F401
    assert hasattr(meta, "activate_meta") and torch._meta_registrations is meta
    assert "torch._prims" in sys.modules and torch.Generator().manual_seed(0).initial_seed() == 0
"""


def test_torch_without_tracing_computes_the_same(tmp_path):
    results = {}
    for how in ("skip", "plain"):
        path = tmp_path / f"{how}.npz"
        proc = subprocess.run([sys.executable, "-c", POSE_AND_DIFFERENTIATE, how, str(path)], capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[how] = np.load(path)
    skip, plain = results["skip"], results["plain"]
    assert sorted(skip.files) == sorted(plain.files) and len(skip.files) > 5
    for name in plain.files:
        assert np.array_equal(skip[name], plain[name]), name  # bit for bit
    assert np.abs(plain["vertices"]).max() > 0 and np.abs(plain["body_pose"]).max() > 0


def test_torch_without_tracing_only_skips_on_the_verified_torch(tmp_path):
    """On another torch release the modules are imported as usual (what its import needs may have moved)."""
    code = ("import sys\nimport bodycapture.lazy as lazy\nlazy.VERIFIED_TORCH = '0.0.0'\n"
            "with lazy.torch_without_tracing():\n    import torch\n"
            "assert hasattr(sys.modules['torch._meta_registrations'], 'activate_meta')\n"
            "assert 'torch._decomp' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_torch_without_tracing_leaves_an_imported_torch_alone():
    import torch  # imported in this process already

    before, finders = dict(sys.modules), list(sys.meta_path)
    with torch_without_tracing():
        assert sys.modules == before and sys.meta_path == finders
    assert sys.modules["torch"] is torch and sys.modules.get("torch._meta_registrations") is before.get(
        "torch._meta_registrations")


def test_the_verified_torch_is_the_pinned_one():
    """Bumping torch's pin means checking the skip again (the tests above) and then VERIFIED_TORCH."""
    import re
    from pathlib import Path

    from bodycapture.lazy import VERIFIED_TORCH

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'"torch==([^"]+)"', pyproject)[1] == VERIFIED_TORCH
