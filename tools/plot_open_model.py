"""Figures of the bundled open model for the README and docs/model_files.md (written into docs/).

    python tools/plot_open_model.py

open_model_rest.png     the rest T-pose with its 55 joints (front and side)
open_model_shapes.png   shape components 1-3 at -2 and +2 standard deviations
open_model_face.png     expression components 1-4 at +-2, and the jaw opened by its joint
open_model_posed.png    a posed body and a fist
open_model_pca.png      cumulative explained variance and held-out vertex error against the number of
                        shape components (the SMPL-X paper's Figures A.9 and A.10, for our model)
Needs matplotlib (the build extra). Reads docs/open_model_report.json written by build_open_model.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bodycapture import load_model  # noqa: E402
from bodycapture.io.raster import OrthoView, render_orthographic  # noqa: E402

DOCS = ROOT / "docs"
SKIN = np.array([0.80, 0.72, 0.66])


def render(vertices: np.ndarray, faces: np.ndarray, size: int = 420, yaw_deg: float = 0.0,
           box: tuple | None = None, joints: np.ndarray | None = None) -> np.ndarray:
    """Orthographic render (H, W, 3) uint8 of a mesh seen from +z after turning it by yaw about y;
    `box` (lo, hi) frames a region (x, y), else the whole mesh; joints are drawn as red dots."""
    if box is None:
        view = OrthoView.fit(vertices, (size, size), margin=0.05, yaw_deg=yaw_deg)
    else:
        lo, hi = np.asarray(box[0]), np.asarray(box[1])
        view = OrthoView((size, size), (lo[:2] + hi[:2]) / 2, size / (1.1 * max(hi[0] - lo[0], hi[1] - lo[1])), yaw_deg)
    img, _ = render_orthographic(vertices, faces, view, colors=np.tile(SKIN, (len(vertices), 1)))
    if joints is not None:
        for x, y in view.project(joints).astype(int):
            img[max(y - 2, 0): y + 3, max(x - 2, 0): x + 3] = [217, 26, 26]
    return img


def grid(images: list[list[np.ndarray]], labels: list[list[str]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(images), len(images[0])
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            axes[r][c].imshow(images[r][c])
            axes[r][c].set_title(labels[r][c], fontsize=9)
            axes[r][c].axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print("wrote", path)


def axis_angle(model, **joints_aa) -> dict[str, torch.Tensor]:
    """Pose parameters from {joint name: axis-angle} (all others zero)."""
    pose = torch.zeros(1, model.num_joints, 3, dtype=torch.float64)
    for name, aa in joints_aa.items():
        pose[0, model.joint_names.index(name)] = torch.tensor(aa, dtype=torch.float64)
    return {part: pose[:, s].reshape(1, -1) for part, s in model.family.part_slices().items()}


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    model = load_model(dtype=torch.float64, num_betas=10, num_expression_coeffs=10)
    faces = model.faces
    rest = model()
    v0, j0 = rest.vertices[0].numpy(), rest.joints[0].numpy()

    grid([[render(v0, faces, joints=j0), render(v0, faces, yaw_deg=90, joints=j0)]],
         [["front", "side"]], DOCS / "open_model_rest.png", "Open model: rest T-pose and its 55 joints")

    shapes, labels = [], []
    for k in range(3):
        row, lab = [], []
        for s in (-2.0, 2.0):
            betas = torch.zeros(1, 10, dtype=torch.float64)
            betas[0, k] = s
            v = model(betas=betas).vertices[0].numpy()
            row.append(render(v, faces, box=(np.array([-1.0, -1.05, 0]), np.array([1.0, 1.0, 0]))))
            h = v[:, 1].max() - v[:, 1].min()
            lab.append(f"beta{k} = {s:+.0f}  ({h:.2f} m)")
        shapes.append(row)
        labels.append(lab)
    grid(shapes, labels, DOCS / "open_model_shapes.png", "Shape components at -2 and +2 standard deviations")

    head = j0[model.joint_names.index("head")]
    box = (head - [0.13, 0.2, 0], head + [0.13, 0.1, 0])
    faces_row, face_labels = [], []
    for k in range(4):
        for s in (-2.0, 2.0):
            e = torch.zeros(1, 10, dtype=torch.float64)
            e[0, k] = s
            faces_row.append(render(model(expression=e).vertices[0].numpy(), faces, box=box, size=300))
            face_labels.append(f"expression{k} = {s:+.0f}")
    jaw = model(**axis_angle(model, jaw=[0.35, 0, 0])).vertices[0].numpy()
    faces_row += [render(v0, faces, box=box, size=300), render(jaw, faces, box=box, size=300)]
    face_labels += ["neutral", "jaw_pose x = 0.35 rad"]
    grid([faces_row[:5], faces_row[5:]], [face_labels[:5], face_labels[5:]], DOCS / "open_model_face.png",
         "Expression components and the jaw joint")

    pose = axis_angle(
        model,
        left_shoulder=[0, 0, -1.1], right_shoulder=[0, 0.5, 1.2], left_elbow=[0, -1.6, 0], right_elbow=[0, 1.0, 0],
        left_hip=[-1.2, 0, 0.1], left_knee=[1.6, 0, 0], right_hip=[0.3, 0, 0], spine2=[0, 0.35, 0],
        neck=[0, 0.5, 0], jaw=[0.3, 0, 0],
    )
    fist = {f"left_{f}{i}": [0, 0, -1.3 if f != "thumb" else -0.4] for f in ("index", "middle", "ring", "pinky", "thumb")
            for i in (1, 2, 3)}
    hand_pose = axis_angle(model, **fist)
    posed = model(**pose).vertices[0].numpy()
    hand = model(**hand_pose).vertices[0].numpy()
    wrist = j0[model.joint_names.index("left_wrist")]
    hand_box = (wrist + [-0.02, -0.12, 0], wrist + [0.22, 0.08, 0])
    grid([[render(posed, faces), render(posed, faces, yaw_deg=60), render(v0, faces, box=hand_box, size=300),
           render(hand, faces, box=hand_box, size=300)]],
         [["posed", "posed, turned", "left hand at rest", "left fist"]], DOCS / "open_model_posed.png",
         "Posing through the SMPL-X kinematic tree")

    report = json.loads((DOCS / "open_model_report.json").read_text())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for gender in ("neutral", "male", "female"):
        if gender not in report:
            continue
        ev = np.array(report[gender]["explained_variance"])
        err = np.array(report[gender]["heldout_mean_mm"])
        a.plot(np.arange(1, len(ev) + 1), 100 * ev, label=gender)
        b.plot(np.arange(1, len(err) + 1), err, label=gender)
    shipped = report["config"]["num_shape"]
    for ax in (a, b):
        ax.axvline(shipped, color="grey", ls=":", lw=1)
        ax.set_xlabel("number of shape components")
        ax.grid(alpha=0.3)
        ax.legend()
    a.set_ylabel("cumulative explained variance (%)")
    a.set_ylim(88, 100.2)
    b.set_ylabel("held-out mean vertex error (mm)")
    b.set_yscale("log")
    fig.suptitle(f"Open model shape space ({shipped} components shipped)")
    fig.tight_layout()
    fig.savefig(DOCS / "open_model_pca.png", dpi=90)
    plt.close(fig)
    print("wrote", DOCS / "open_model_pca.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
