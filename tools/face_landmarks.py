"""Place the 68 iBUG / OpenPose face landmarks on the open model's mesh, once, at build time.

    python tools/face_landmarks.py [--model src/bodycapture/data/models/open_neutral.npz]

There is no landmark annotation of the MakeHuman mesh, so we make one (recipe section 3.9): render the
neutral template's face from the front with a z-buffer that remembers, per pixel, the triangle and the
barycentric coordinates; detect it with MediaPipe FaceMesh (its model ships in the wheel); take the
widely used 468 -> 68 subset; read each landmark back as (triangle, barycentrics). Left/right pairs are
then made exactly symmetric through the mesh's mirror table and midline points put on the midline.

Writes tools/open_model_landmarks.json (read by tools/build_open_model.py) and a check image into docs/.
Needs the build extra (`pip install -e ".[build-model]"`: MediaPipe).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bodycapture.io.raster import rasterize, shade, vertex_normals  # noqa: E402
from bodycapture.keypoints.layout import IBUG_PAIRS  # noqa: E402
from bodycapture.keypoints.mediapipe import MEDIAPIPE_TO_IBUG68  # noqa: E402
from bodycapture.models import BodyModel, read_model_file  # noqa: E402

IBUG_MIDLINE = [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]


def closest_points(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray):
    """For each point (P, 3), the closest point on the triangles: (face index (P,), barycentrics (P, 3))."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    out_f, out_b = [], []
    for p in points:
        # project onto each triangle's plane, clamp barycentrics by testing the 7 Voronoi regions
        ab, ac, ap = b - a, c - a, p - a
        d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
        bp = p - b
        d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
        cp = p - c
        d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
        va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
        denom = np.where(np.abs(va + vb + vc) < 1e-20, 1e-20, va + vb + vc)
        v, w = vb / denom, vc / denom
        bary = np.stack([1 - v - w, v, w], 1)
        regions = [
            ((d1 <= 0) & (d2 <= 0), [1, 0, 0]),
            ((d3 >= 0) & (d4 <= d3), [0, 1, 0]),
            ((d6 >= 0) & (d5 <= d6), [0, 0, 1]),
        ]
        for mask, corner in regions:
            bary[mask] = corner
        t_ab = np.clip(d1 / np.where(d1 - d3 == 0, 1e-20, d1 - d3), 0, 1)
        m = (vc <= 0) & (d1 >= 0) & (d3 <= 0) & ~regions[0][0] & ~regions[1][0]
        bary[m] = np.stack([1 - t_ab, t_ab, 0 * t_ab], 1)[m]
        t_ac = np.clip(d2 / np.where(d2 - d6 == 0, 1e-20, d2 - d6), 0, 1)
        m = (vb <= 0) & (d2 >= 0) & (d6 <= 0) & ~regions[0][0] & ~regions[2][0]
        bary[m] = np.stack([1 - t_ac, 0 * t_ac, t_ac], 1)[m]
        t_bc = np.clip((d4 - d3) / np.where((d4 - d3) + (d5 - d6) == 0, 1e-20, (d4 - d3) + (d5 - d6)), 0, 1)
        m = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0) & ~regions[1][0] & ~regions[2][0]
        bary[m] = np.stack([0 * t_bc, 1 - t_bc, t_bc], 1)[m]
        q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
        best = int(np.argmin(((q - p) ** 2).sum(1)))
        out_f.append(best)
        out_b.append(bary[best])
    return np.array(out_f), np.array(out_b)


def render_face(model: BodyModel, size: int = 768):
    """Front orthographic render of the head: image (H, W, 3) uint8, raster, and the pixel mapping."""
    verts = model().vertices[0].double().numpy()
    faces = model.faces
    names = model.joint_names
    weights = model.lbs_weights.double().numpy()
    eye = weights[:, [names.index("left_eye_smplhf"), names.index("right_eye_smplhf")]].sum(1) > 0.5
    head = verts[:, 1] > model().joints[0, names.index("neck")].numpy()[1]
    centre = verts[head].mean(0)
    half = 0.65 * (verts[head, 1].max() - verts[head, 1].min())
    px = (verts[:, 0] - centre[0] + half) / (2 * half) * size
    py = (centre[1] + half - verts[:, 1]) / (2 * half) * size
    keep = head[faces].all(1)
    raster = rasterize(np.stack([px, py], 1), -verts[:, 2], faces[keep], (size, size))
    raster.face = np.where(raster.face >= 0, np.nonzero(keep)[0][np.maximum(raster.face, 0)], -1)
    colours = np.tile([0.86, 0.66, 0.56], (len(verts), 1))
    eye_joints = [names.index("left_eye_smplhf"), names.index("right_eye_smplhf")]
    joints = model().joints[0].double().numpy()
    for j in eye_joints:
        own = weights[:, j] > 0.5
        radius = np.linalg.norm(verts[own] - joints[j], axis=1).max()
        front = (verts[own, 2] - joints[j, 2]) / radius
        colours[own] = np.where(front[:, None] > 0.93, [0.05, 0.05, 0.05],
                                np.where(front[:, None] > 0.8, [0.3, 0.22, 0.15], [0.95, 0.95, 0.95]))
    img = shade(raster, vertex_normals(verts, faces), faces, colours)
    return (img * 255).astype(np.uint8), raster, verts, eye


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "src" / "bodycapture" / "data" / "models" / "open_neutral.npz")
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "open_model_landmarks.json")
    parser.add_argument("--image", type=Path, default=ROOT / "docs" / "open_model_landmarks.png")
    args = parser.parse_args(argv)

    import mediapipe as mp
    from PIL import Image, ImageDraw

    model = BodyModel(read_model_file(args.model), dtype=__import__("torch").float64)
    img, raster, verts, eye = render_face(model)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as detector:
        result = detector.process(img)
    if not result.multi_face_landmarks:
        print("MediaPipe found no face in the render", file=sys.stderr)
        return 1
    lms = result.multi_face_landmarks[0].landmark
    h, w = img.shape[:2]
    pixels = np.array([[lms[i].x * w, lms[i].y * h] for i in MEDIAPIPE_TO_IBUG68])

    # read back: the surface point under each landmark pixel (never an eyeball)
    faces = model.faces
    usable = ~eye[faces].any(1)
    points = []
    for x, y in pixels:
        r, c = int(y), int(x)
        f = raster.face[r, c]
        if f < 0 or not usable[f]:  # nearest usable pixel
            rows, cols = np.nonzero((raster.face >= 0) & usable[np.maximum(raster.face, 0)])
            k = np.argmin((rows - r) ** 2 + (cols - c) ** 2)
            r, c, f = rows[k], cols[k], raster.face[rows[k], cols[k]]
        points.append((raster.bary[r, c][:, None] * verts[faces[f]]).sum(0))
    points = np.array(points)

    # symmetrise: average each pair with its mirror image, mirror back; midline points get x = 0
    sym = points.copy()
    for right, left in IBUG_PAIRS:
        avg = 0.5 * (points[right] + points[left] * [-1, 1, 1])
        sym[right], sym[left] = avg, avg * [-1, 1, 1]
    sym[IBUG_MIDLINE, 0] = 0.0
    face_ids, bary = closest_points(sym, verts, faces[usable])
    face_ids = np.nonzero(usable)[0][face_ids]
    placed = (bary[:, :, None] * verts[faces[face_ids]]).sum(1)
    print(f"landmarks moved by symmetrisation: mean {np.linalg.norm(placed - points, axis=1).mean() * 1e3:.2f} mm, "
          f"max {np.linalg.norm(placed - points, axis=1).max() * 1e3:.2f} mm")

    out = {
        "lmk_faces_idx": face_ids[17:].tolist(),
        "lmk_bary_coords": bary[17:].round(6).tolist(),
        "contour_lmk_faces_idx": face_ids[:17].tolist(),
        "contour_lmk_bary_coords": bary[:17].round(6).tolist(),
    }
    args.out.write_text(json.dumps(out))
    picture = Image.fromarray(img)
    draw = ImageDraw.Draw(picture)
    for x, y in pixels:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(255, 0, 0))
    args.image.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.image)
    print(f"wrote {args.out} and {args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
