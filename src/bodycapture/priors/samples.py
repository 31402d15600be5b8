"""Bodies sampled from the pose prior (our VPoser): what the prior believes people look like. `bodycapture
sample-poses` is this module with arguments.

    poses, vertices = sample_bodies(model, n=16, seed=0)       # (n, 63) body_pose, (n, V, 3)
    write_samples("samples/", model, poses, vertices)          # sample_000.obj ..., samples.png, samples.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["sample_bodies", "write_samples", "contact_sheet"]


def sample_bodies(model, n: int, seed: int = 0, temperature: float = 1.0, vposer=None) -> tuple[torch.Tensor, np.ndarray]:
    """n body poses drawn from VPoser (latent ~ N(0, temperature^2 I), decoded) and the model posed with
    them at its mean shape: -> (body_pose (n, 63) axis-angle, vertices (n, V, 3) numpy)."""
    from .vposer import load_vposer

    net = vposer or load_vposer()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        poses = net.sample(n, generator=generator, temperature=temperature)
        vertices = model(body_pose=poses).vertices.cpu().numpy()
    return poses, vertices


def contact_sheet(vertices: np.ndarray, faces: np.ndarray, tile: int = 256) -> np.ndarray:
    """Every body (n, V, 3) rendered from the front in a tile of a square-ish grid: (rows tile, cols tile, 3)
    uint8, white where no body is."""
    from ..io.raster import OrthoView, render_orthographic

    n = len(vertices)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    for i, v in enumerate(vertices):  # one render per body: a handful of bodies, not a hot path
        image, _ = render_orthographic(v, faces, OrthoView.fit(v, (tile, tile), margin=0.06))
        r, c = divmod(i, cols)
        grid[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = image
    return grid


def write_samples(out: str | Path, model, poses: torch.Tensor, vertices: np.ndarray) -> Path:
    """Write sample_NNN.obj per body, samples.png (`contact_sheet`) and samples.npz (body_pose), each
    atomically, into `out`; returns the PNG's path."""
    from PIL import Image

    from ..io.atomic import atomic_path
    from ..io.mesh import write_obj

    out = Path(out)
    for i, v in enumerate(vertices):
        write_obj(out / f"sample_{i:03d}.obj", v, model.faces)
    with atomic_path(out / "samples.png") as tmp:
        Image.fromarray(contact_sheet(vertices, model.faces)).save(tmp, format="PNG")
    with atomic_path(out / "samples.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, body_pose=poses.cpu().numpy())
    return out / "samples.png"
