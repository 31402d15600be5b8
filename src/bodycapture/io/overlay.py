"""The fitted meshes drawn over the photo, with correct occlusion between and within people (z-buffer),
on the CPU with no OpenGL: our own rasteriser (raster.py) under the fit's perspective camera."""

from __future__ import annotations

import numpy as np

from .images import fitted_size, scaled_to_fit
from .raster import rasterize, shade, vertex_normals

__all__ = ["render_overlay", "MAX_SIDE"]

# result folders' overlay.png is at most this many pixels on its longer side (a screen's): a larger photo is shown
# scaled down. The rasteriser's work and memory grow with the pixels the meshes cover: a 45-megapixel photo's
# two people drawn at full size took 27.7 s and 4 GB, at 4096 px 9.4 s and 1.5 GB
MAX_SIDE = 2560


def render_overlay(image: np.ndarray | None, vertices: np.ndarray, faces: np.ndarray, focal: np.ndarray,
                   center: np.ndarray, image_size: tuple[int, int], alpha: float = 0.85,
                   max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8: the shaded meshes of P people over `image` (or a grey background).

    vertices: (P, V, 3) camera space (OpenCV: x right, y down, z forward); focal, center: (P, 2) or (2,).
    max_side: a larger image is drawn scaled down to this many pixels on its longer side (the camera with it).
    Only the box of pixels the meshes project into is rasterised and blended; every other pixel is the
    photo's, unchanged (coco_564's two people over a 12-megapixel copy of the photo: 5.1 -> 1.2 s, the same image).
    """
    h, w = image_size
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        h, w = fitted_size(h, w, max_side)
        if image is not None:
            image = scaled_to_fit(image, max_side)
        focal, center = np.asarray(focal, dtype=np.float64) * scale, np.asarray(center, dtype=np.float64) * scale
    verts = np.asarray(vertices, dtype=np.float64).reshape(-1, vertices.shape[-2], 3)
    P, V = verts.shape[:2]
    focal = np.broadcast_to(np.asarray(focal, dtype=np.float64).reshape(-1, 2), (P, 2))
    center = np.broadcast_to(np.asarray(center, dtype=np.float64).reshape(-1, 2), (P, 2))
    z = np.clip(verts[..., 2], 1e-3, None)
    pix = (verts[..., :2] / z[..., None] * focal[:, None] + center[:, None]).reshape(-1, 2)
    out = np.full((h, w, 3), 127, dtype=np.uint8) if image is None else np.array(image[..., :3], dtype=np.uint8)
    finite = np.isfinite(pix).all(1)
    if not finite.any():
        return out
    # the pixels whose centres the meshes can cover (each pixel centre is at integer + 0.5)
    x0, y0 = np.clip(np.floor(pix[finite].min(0)), 0, [w, h]).astype(int)
    x1, y1 = np.clip(np.ceil(pix[finite].max(0)) + 1, 0, [w, h]).astype(int)
    if x1 <= x0 or y1 <= y0:
        return out
    all_faces = (np.asarray(faces)[None] + (np.arange(P) * V)[:, None, None]).reshape(-1, 3)
    flat_v = verts.reshape(-1, 3)
    raster = rasterize(pix - [x0, y0], z.reshape(-1), all_faces, (y1 - y0, x1 - x0))
    # shade() lights from +z with y up; OpenCV camera axes have y down and the camera looking along +z
    normals = vertex_normals(flat_v, all_faces) * np.array([1.0, -1.0, -1.0])
    colours = np.tile([0.65, 0.74, 0.86], (len(flat_v), 1))
    mesh = shade(raster, normals, all_faces, colours, background=0.0)
    hit = raster.face >= 0
    box = out[y0:y1, x0:x1]
    under = 0.5 if image is None else box[hit] / 255.0
    blend = alpha * mesh[hit] + (1 - alpha) * under
    box[hit] = (np.clip(blend, 0, 1) * 255).astype(np.uint8)
    return out
