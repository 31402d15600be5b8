"""Writing a fit's results for one image: parameters (.npz and SMPLify-X's result.pkl layout), meshes,
keypoints and the overlay, into one folder, each file atomically."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..keypoints.openpose import write_openpose
from ..keypoints.types import ImageKeypoints
from .atomic import atomic_path, write_bytes_atomic
from .mesh import write_mesh
from .overlay import render_overlay

__all__ = ["write_results", "MESH_FORMATS", "to_viewer_frame"]

MESH_FORMATS = ("obj", "ply", "glb")


def to_viewer_frame(vertices: np.ndarray) -> np.ndarray:
    """Camera space (OpenCV: y down, z forward) -> viewer space (y up, z towards the viewer): a 180
    degree turn about x, as SMPLify-X does before saving meshes."""
    return vertices * np.array([1.0, -1.0, -1.0])


def _suffix(k: int, n: int) -> str:
    return "" if n == 1 else f"_{k:03d}"


def write_results(out_dir: str | Path, result, people: np.ndarray, keypoints: ImageKeypoints,
                  image: np.ndarray | None, formats=("obj",), model_info: dict | None = None) -> list[Path]:
    """Write the fit of `people` (indices into `result`) of one image into out_dir. Returns the files.

    params.npz: every person's parameters stacked (SMPL-X names), camera, loss, per-stage losses.
    result.pkl (result_NNN.pkl for several people): SMPLify-X's per-person layout; body_pose is the
        63-D axis-angle (SMPLify-X stores its 32-D VPoser latent there).
    mesh.obj / .ply / .glb (mesh_NNN.* for several people): viewer frame, y up.
    keypoints.json: the keypoints fitted (OpenPose JSON). overlay.png: the meshes over the photo.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    people = np.asarray(people)
    n = len(people)
    written = []
    params = {k: v[people].numpy() for k, v in result.params.items()}
    arrays = {**params,
              "camera_focal": result.focal[people].numpy(), "camera_center": result.center[people].numpy(),
              "camera_translation": params["transl"], "camera_rotation": np.tile(np.eye(3), (n, 1, 1)),
              "image_size": result.image_size[people[0]].numpy().astype(np.int64),
              "loss": result.loss[people].numpy(), "flipped": result.flipped[people].numpy()}
    for i, stage in enumerate(result.stages):
        for term, values in stage["terms"].items():
            arrays[f"stage{i}_{term}"] = values[people].numpy()
        if "collisions" in stage:  # colliding triangle pairs at the end of the stage
            arrays[f"stage{i}_collisions"] = stage["collisions"][people].numpy()
    for k, v in (model_info or {}).items():
        arrays[f"model_{k}"] = np.asarray(v)
    with atomic_path(out_dir / "params.npz") as tmp:
        np.savez(tmp, **arrays)
    written.append(out_dir / "params.npz")

    for k, p in enumerate(people):
        pkl = {"camera_rotation": np.eye(3, dtype=np.float32)[None],
               "camera_translation": result.params["transl"][p : p + 1].numpy().astype(np.float32)}
        for name, value in result.params.items():
            if name != "transl":
                pkl[name] = value[p : p + 1].numpy().astype(np.float32)
        path = out_dir / f"result{_suffix(k, n)}.pkl"
        write_bytes_atomic(path, pickle.dumps(pkl, protocol=2))
        written.append(path)
        verts = to_viewer_frame(result.vertices[p].numpy())
        for fmt in formats:
            path = out_dir / f"mesh{_suffix(k, n)}.{fmt}"
            write_mesh(path, verts, result.faces)
            written.append(path)

    write_openpose(out_dir / "keypoints.json", keypoints)
    written.append(out_dir / "keypoints.json")
    h, w = (int(x) for x in result.image_size[people[0]].tolist())
    overlay = render_overlay(image, result.vertices[people].numpy(), result.faces, result.focal[people].numpy(),
                             result.center[people].numpy(), (h, w))
    from PIL import Image

    with atomic_path(out_dir / "overlay.png") as tmp:
        Image.fromarray(overlay).save(tmp, format="PNG")
    written.append(out_dir / "overlay.png")
    return written
