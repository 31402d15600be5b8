"""The overlay: the meshes rasterised in the box they project into, blended over the photo, the rest of the
photo untouched; the same picture as rasterising the whole frame."""

import numpy as np

from bodycapture.io.overlay import render_overlay
from bodycapture.io.raster import rasterize, shade, vertex_normals


def _grid(nx: int, ny: int, x0: float, y0: float, size: float, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy square sheet facing the camera: (V, 3) vertices in camera space, (F, 3) faces."""
    u, v = np.meshgrid(np.linspace(0, 1, nx), np.linspace(0, 1, ny))
    z = depth + 0.05 * np.sin(6 * u) * np.cos(5 * v)
    verts = np.stack([x0 + size * u, y0 + size * v, z], -1).reshape(-1, 3)
    i = np.arange(nx * ny).reshape(ny, nx)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    return verts, np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])


def _whole_frame(image, vertices, faces, focal, center, size, alpha=0.85):
    """The reference: every pixel of the frame rasterised and blended in floating point."""
    h, w = size
    P, V = vertices.shape[:2]
    z = np.clip(vertices[..., 2], 1e-3, None)
    pix = vertices[..., :2] / z[..., None] * focal + center
    faces_all = (faces[None] + (np.arange(P) * V)[:, None, None]).reshape(-1, 3)
    raster = rasterize(pix.reshape(-1, 2), z.reshape(-1), faces_all, (h, w))
    normals = vertex_normals(vertices.reshape(-1, 3), faces_all) * np.array([1.0, -1.0, -1.0])
    mesh = shade(raster, normals, faces_all, np.tile([0.65, 0.74, 0.86], (P * V, 1)), background=0.0)
    base = image / 255.0
    hit = (raster.face >= 0)[..., None]
    return (np.clip(np.where(hit, alpha * mesh + (1 - alpha) * base, base), 0, 1) * 255).astype(np.uint8), hit[..., 0]


def test_overlay_is_the_whole_frame_rendering_and_leaves_the_rest_of_the_photo_alone():
    rng = np.random.default_rng(0)
    h, w = 120, 160
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    first, faces = _grid(12, 10, -0.3, -0.2, 0.4, 2.0)
    second, _ = _grid(12, 10, 0.25, 0.1, 0.6, 2.5)  # runs past the right and bottom edges
    vertices = np.stack([first, second])
    focal, center = np.array([150.0, 150.0]), np.array([w / 2, h / 2])
    out = render_overlay(photo, vertices, faces, focal, center, (h, w))
    expected, hit = _whole_frame(photo, vertices, faces, focal, center, (h, w))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert 0.1 < hit.mean() < 0.9  # the meshes cover part of the frame, not all of it
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[~hit], photo[~hit])  # every other pixel is the photo's, unchanged
    assert np.abs(out[hit].astype(int) - photo[hit].astype(int)).mean() > 10  # the meshes are drawn
    grey = render_overlay(None, vertices, faces, focal, center, (h, w))
    assert (grey[~hit] == 127).all() and not (grey[hit] == 127).all()


def test_overlay_of_meshes_outside_the_frame_is_the_photo():
    photo = np.full((40, 50, 3), 200, dtype=np.uint8)
    verts, faces = _grid(4, 4, 5.0, 5.0, 0.5, 2.0)  # far to the right of and below the frame
    out = render_overlay(photo, verts[None], faces, np.array([100.0, 100.0]), np.array([25.0, 20.0]), (40, 50))
    np.testing.assert_array_equal(out, photo)
    assert out is not photo  # a new image: the caller's photo is not drawn on


def test_a_photo_larger_than_max_side_is_drawn_scaled_down_with_its_camera():
    from PIL import Image

    rng = np.random.default_rng(1)
    h, w = 90, 120
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    verts, faces = _grid(12, 10, -0.3, -0.2, 0.5, 2.0)
    focal, center = np.array([100.0, 100.0]), np.array([w / 2, h / 2])
    out = render_overlay(photo, verts[None], faces, focal, center, (h, w), max_side=60)  # half size
    small = np.asarray(Image.fromarray(photo).resize((60, 45), Image.LANCZOS, reducing_gap=3.0))
    expected = render_overlay(small, verts[None], faces, focal / 2, center / 2, (45, 60))
    assert out.shape == (45, 60, 3)
    np.testing.assert_array_equal(out, expected)
    assert render_overlay(photo, verts[None], faces, focal, center, (h, w), max_side=120).shape == (h, w, 3)


def test_skeletons_of_a_large_photo_are_drawn_scaled_down():
    from bodycapture.io.draw import draw_keypoints

    photo = np.zeros((200, 300, 3), dtype=np.uint8)
    points = np.zeros((1, 135, 3))
    points[0, :25] = [150.0, 100.0, 0.9]  # every body point at the centre
    full = np.asarray(draw_keypoints(photo, points))
    small = np.asarray(draw_keypoints(photo, points, max_side=150))
    assert full.shape == (200, 300, 3) and small.shape == (100, 150, 3)
    assert full[100, 150].any() and small[50, 75].any()  # the dot is where the point is, at either size
    assert not small[5, 5].any()
