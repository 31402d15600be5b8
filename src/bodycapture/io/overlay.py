"""The fitted meshes drawn over the photo, with correct occlusion between and within people (z-buffer),
on the CPU with no OpenGL: our own rasteriser (raster.py) under the fit's perspective camera."""

from __future__ import annotations

import numpy as np

from .raster import rasterize, shade, vertex_normals

__all__ = ["render_overlay"]


def render_overlay(image: np.ndarray | None, vertices: np.ndarray, faces: np.ndarray, focal: np.ndarray,
                   center: np.ndarray, image_size: tuple[int, int], alpha: float = 0.85) -> np.ndarray:
    """(H, W, 3) uint8: the shaded meshes of P people over `image` (or a grey background).

    vertices: (P, V, 3) camera space (OpenCV: x right, y down, z forward); focal, center: (P, 2) or (2,).
    """
    h, w = image_size
    verts = np.asarray(vertices, dtype=np.float64).reshape(-1, vertices.shape[-2], 3)
    P, V = verts.shape[:2]
    focal = np.broadcast_to(np.asarray(focal, dtype=np.float64).reshape(-1, 2), (P, 2))
    center = np.broadcast_to(np.asarray(center, dtype=np.float64).reshape(-1, 2), (P, 2))
    z = np.clip(verts[..., 2], 1e-3, None)
    pix = verts[..., :2] / z[..., None] * focal[:, None] + center[:, None]
    all_faces = (np.asarray(faces)[None] + (np.arange(P) * V)[:, None, None]).reshape(-1, 3)
    flat_v = verts.reshape(-1, 3)
    raster = rasterize(pix.reshape(-1, 2), z.reshape(-1), all_faces, (h, w))
    # shade() lights from +z with y up; OpenCV camera axes have y down and the camera looking along +z
    normals = vertex_normals(flat_v, all_faces) * np.array([1.0, -1.0, -1.0])
    colours = np.tile([0.65, 0.74, 0.86], (len(flat_v), 1))
    mesh = shade(raster, normals, all_faces, colours, background=0.0)
    base = np.full((h, w, 3), 0.5) if image is None else np.asarray(image, dtype=np.float64)[..., :3] / 255.0
    hit = (raster.face >= 0)[..., None]
    out = np.where(hit, alpha * mesh + (1 - alpha) * base, base)
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)
