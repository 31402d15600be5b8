"""A small z-buffer triangle rasteriser (NumPy, CPU) that also returns, per pixel, which triangle is
seen and where on it (barycentric coordinates). Used for model figures, landmark placement and
visibility; a GPU renderer can replace it behind the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Raster", "rasterize", "shade", "vertex_normals", "OrthoView", "render_orthographic"]


@dataclass
class Raster:
    """Per-pixel results: face (H, W) int64, -1 where empty; bary (H, W, 3); depth (H, W), inf where empty."""

    face: np.ndarray
    bary: np.ndarray
    depth: np.ndarray


def rasterize(points: np.ndarray, depth: np.ndarray, faces: np.ndarray, size: tuple[int, int]) -> Raster:
    """Rasterise triangles given in pixel coordinates.

    points: (V, 2) pixel x (right), y (down); depth: (V,) distance from the camera (smaller is nearer);
    faces: (F, 3); size: (H, W). Pixel centres are at integer + 0.5. Barycentric coordinates are
    screen-space (exact for orthographic views; fine for figures under perspective). Where triangles
    tie in depth, the one listed first wins.

    Vectorised: triangles are grouped by the size of their pixel box (1, 2, 4, ... pixels), each group
    tests all the pixels of its boxes at once, and the nearest fragment per pixel wins (a sort).
    """
    h, w = size
    face_buf = -np.ones((h, w), dtype=np.int64)
    bary_buf = np.zeros((h, w, 3))
    depth_buf = np.full((h, w), np.inf)
    tri = np.asarray(points, dtype=np.float64)[faces]  # (F, 3, 2)
    lo = np.floor(tri.min(1) - 0.5).astype(np.int64).clip(0, [w - 1, h - 1])
    hi = np.ceil(tri.max(1) - 0.5).astype(np.int64).clip(0, [w - 1, h - 1])
    (x0, y0), (x1, y1), (x2, y2) = tri[:, 0].T, tri[:, 1].T, tri[:, 2].T
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    visible = (tri.max(1) >= 0).all(1) & (tri.min(1)[:, 0] < w) & (tri.min(1)[:, 1] < h) & (np.abs(area) >= 1e-12)
    extent = (hi - lo + 1).max(1)
    fragments = []  # (face, pixel, depth, b0, b1, b2) per group
    k_prev = 0
    k = 1
    while k_prev < extent[visible].max(initial=0):
        group = np.nonzero(visible & (extent > k_prev) & (extent <= k))[0]
        per_chunk = max(1, 4_000_000 // (k * k))  # bound the memory of one step
        for start in range(0, len(group), per_chunk):
            f = group[start : start + per_chunk]
            offs = np.arange(k)
            px = (lo[f, 0, None, None] + offs[None, None, :]) + 0.5  # (n, 1, k)
            py = (lo[f, 1, None, None] + offs[None, :, None]) + 0.5  # (n, k, 1)
            ex, ey, a = (v[f, None, None] for v in (x0, y0, area))
            b1 = ((px - ex) * (y2[f, None, None] - ey) - (x2[f, None, None] - ex) * (py - ey)) / a
            b2 = ((x1[f, None, None] - ex) * (py - ey) - (px - ex) * (y1[f, None, None] - ey)) / a
            b0 = 1.0 - b1 - b2
            inside = ((b0 >= -1e-9) & (b1 >= -1e-9) & (b2 >= -1e-9)
                      & (px <= hi[f, 0, None, None] + 0.5) & (py <= hi[f, 1, None, None] + 0.5))
            n, r, c = np.nonzero(inside)
            b = np.stack([b0[n, r, c], b1[n, r, c], b2[n, r, c]], 1)
            face = f[n]
            z = (b * depth[faces[face]]).sum(1)
            pixel = (lo[face, 1] + r) * w + (lo[face, 0] + c)
            fragments.append((face, pixel, z, b))
        k_prev, k = k, 2 * k
    if fragments:
        face, pixel, z, b = (np.concatenate(x) for x in zip(*fragments))
        order = np.lexsort((face, z, pixel))  # by pixel, then nearest, then first listed
        pixel_sorted = pixel[order]
        first = order[np.r_[True, pixel_sorted[1:] != pixel_sorted[:-1]]]
        rows, cols = np.divmod(pixel[first], w)
        depth_buf[rows, cols] = z[first]
        face_buf[rows, cols] = face[first]
        bary_buf[rows, cols] = b[first]
    return Raster(face_buf, bary_buf, depth_buf)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit normals: area-weighted sums of the adjacent faces' normals."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.clip(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12, None)


def shade(raster: Raster, normals: np.ndarray, faces: np.ndarray, colors: np.ndarray,
          light: np.ndarray = np.array([0.3, 0.5, 1.0]), background: float = 1.0) -> np.ndarray:
    """Lambert-shaded RGB image (H, W, 3) in [0, 1] from a raster, per-vertex normals (V, 3) pointing
    towards the viewer's side (+z = towards the camera) and per-vertex colours (V, 3)."""
    light = light / np.linalg.norm(light)
    hit = raster.face >= 0
    img = np.full(raster.face.shape + (3,), background, dtype=np.float64)
    f = raster.face[hit]
    b = raster.bary[hit]
    n = (normals[faces[f]] * b[..., None]).sum(1)
    n /= np.clip(np.linalg.norm(n, axis=1, keepdims=True), 1e-12, None)
    c = (colors[faces[f]] * b[..., None]).sum(1)
    lambert = np.clip(n @ light, 0, 1)[:, None]
    img[hit] = c * (0.25 + 0.75 * lambert)
    return img


@dataclass
class OrthoView:
    """An orthographic front view: pixel = ((x - cx) s + W/2, (cy - y) s + H/2) after a yaw about y."""

    size: tuple[int, int]
    centre: np.ndarray  # (2,) world x, y at the image centre
    scale: float  # pixels per metre
    yaw_deg: float = 0.0

    def rotate(self, points: np.ndarray) -> np.ndarray:
        a = np.radians(self.yaw_deg)
        rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        return points @ rot.T

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 2) pixels."""
        p = self.rotate(points)
        h, w = self.size
        return np.stack([(p[:, 0] - self.centre[0]) * self.scale + w / 2, (self.centre[1] - p[:, 1]) * self.scale + h / 2], 1)

    @classmethod
    def fit(cls, points: np.ndarray, size: tuple[int, int], margin: float = 0.05, yaw_deg: float = 0.0) -> "OrthoView":
        """The view that frames `points` (N, 3) with a relative margin."""
        view = cls(size, np.zeros(2), 1.0, yaw_deg)
        p = view.rotate(points)
        lo, hi = p.min(0), p.max(0)
        h, w = size
        scale = (1 - 2 * margin) * min(w / max(hi[0] - lo[0], 1e-9), h / max(hi[1] - lo[1], 1e-9))
        return cls(size, (lo[:2] + hi[:2]) / 2, scale, yaw_deg)


def render_orthographic(vertices: np.ndarray, faces: np.ndarray, view: OrthoView, colors=None,
                        background: float = 1.0) -> tuple[np.ndarray, Raster]:
    """Shaded (H, W, 3) uint8 image and raster of a mesh (V, 3) seen through `view` (camera at +z)."""
    rotated = view.rotate(vertices)
    raster = rasterize(view.project(vertices), -rotated[:, 2], faces, view.size)
    if colors is None:
        colors = np.tile([0.85, 0.68, 0.58], (len(vertices), 1))
    img = shade(raster, vertex_normals(rotated, faces), faces, colors, background=background)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), raster
