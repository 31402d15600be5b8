"""Detection + fitting on real photos: 2D reprojection error against the detected keypoints, per group,
and overlays for the README.

    python benchmarks/real_photos.py [--images DIR] [--out docs/real_photos.json] [--overlays docs/real]

Default images: ../shared/data/images when present (all 14 COCO photos), else tests/data/images.
There is no 3D truth for these photos: the figure says how well the fit explains what was detected.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

import bodycapture
from bodycapture.fitting import fit
from bodycapture.io.overlay import render_overlay
from bodycapture.keypoints.layout import BODY, FACE, LEFT_HAND, RIGHT_HAND
from bodycapture.keypoints.mediapipe import IMAGE_SUFFIXES, MediaPipeDetector, read_image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = ROOT.parent / "shared" / "data" / "images"
    parser.add_argument("--images", type=Path, default=shared if shared.is_dir() else ROOT / "tests" / "data" / "images")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "real_photos.json")
    parser.add_argument("--overlays", type=Path, default=ROOT / "docs" / "real")
    args = parser.parse_args()
    model = bodycapture.load_model()
    groups = {"body": BODY, "hands": np.r_[LEFT_HAND, RIGHT_HAND], "face": FACE}
    rows = {}
    args.overlays.mkdir(parents=True, exist_ok=True)
    with MediaPipeDetector() as detector:
        for path in sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            image = read_image(path)
            kp = detector(image)
            if kp.num_people == 0:
                rows[path.name] = "no person found"
                print(f"{path.name}: no person found")
                continue
            result = fit(kp, model)
            det = kp.points[0]
            row = {}
            for group, idx in groups.items():
                seen = det[idx, 2] > 0
                if seen.any():
                    err = np.linalg.norm(result.keypoints_2d[0, idx].numpy()[seen] - det[idx, :2][seen], axis=1)
                    row[f"px_{group}"] = float(np.median(err))
            row["seconds"] = result.seconds
            rows[path.name] = row
            overlay = render_overlay(image, result.vertices.numpy(), model.faces, result.focal.numpy(),
                                     result.center.numpy(), image.shape[:2])
            Image.fromarray(overlay).save(args.overlays / f"{path.stem}.png")
            print(f"{path.name}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
    args.out.write_text(json.dumps(rows, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
