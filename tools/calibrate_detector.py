"""Calibrate the MediaPipe detector's confidences against ground truth, on renders of the open model.

    python tools/calibrate_detector.py [--n 120] [--seed 0]

The fitter weights each keypoint's squared residual by confidence^2 (SMPLify-X's convention), so a
confidence proportional to 1 / (the detector's error scale) makes the data term a proper weighted least
squares. We render synthetic people (evaluation/synthetic.py: poses, shapes, cameras, occlusion) with
the CPU rasteriser, detect them, and measure the detector's error against the true projections:
- per group (body, hands, face): the robust error scale (1.4826 x median absolute error), in pixels
  of a 1000-pixel-high image;
- for body points, as a function of MediaPipe's visibility score (bins).
Confidence = reference scale / measured scale, with the reference chosen so that fully visible body
points get 0.85; hands and face are capped at that value too. The numbers are written to docs/detector_calibration.json; the constants in
keypoints/mediapipe.py are copied from there. Renders are untextured, so faces and hands are easier or
harder than in photos in ways this cannot measure: the calibration fixes the relative weights of groups
and of visibility levels, which is what the data term needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import bodycapture  # noqa: E402
from bodycapture.evaluation.synthetic import generate  # noqa: E402
from bodycapture.io.overlay import render_overlay  # noqa: E402
from bodycapture.keypoints.layout import BODY, CONTOUR, FACE, IGNORED_BY_DEFAULT, LEFT_HAND, RIGHT_HAND  # noqa: E402
from bodycapture.keypoints.mediapipe import MediaPipeDetector, VISIBILITY_BINS  # noqa: E402

REFERENCE_CONFIDENCE = 0.85


def robust_scale(errors: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(errors))) if len(errors) else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "detector_calibration.json")
    args = parser.parse_args(argv)
    model = bodycapture.load_model()
    h, w = 720, 960
    suite = generate(model, args.n, args.seed, image_size=(h, w))
    # body points the fitter uses (neck and hips are defined differently by every detector and are ignored)
    used_body = np.setdiff1d(BODY, IGNORED_BY_DEFAULT)
    groups = {"body": used_body, "hands": np.r_[LEFT_HAND, RIGHT_HAND], "face": np.r_[FACE, CONTOUR]}
    errors = {g: [] for g in groups}
    body_by_vis = {i: [] for i in range(len(VISIBILITY_BINS) - 1)}
    found = 0
    with MediaPipeDetector(raw_visibility=True) as detector:
        for i in range(args.n):
            image = render_overlay(None, suite.vertices[i : i + 1].numpy(), model.faces,
                                   np.full(2, float(suite.focal[i])), np.array([w / 2, h / 2]), (h, w), alpha=1.0)
            kp = detector(image)
            if kp.num_people == 0:
                continue
            found += 1
            det, true = kp.points[0], suite.keypoints2d[i].numpy()
            err = np.linalg.norm(det[:, :2] - true, axis=1) * 1000.0 / h
            for g, idx in groups.items():
                seen = det[idx, 2] > 0
                errors[g].append(err[idx][seen])
            vis = det[used_body, 2]
            for b in body_by_vis:
                sel = (vis > VISIBILITY_BINS[b]) & (vis <= VISIBILITY_BINS[b + 1])
                body_by_vis[b].append(err[used_body][sel])
    scales = {g: robust_scale(np.concatenate(v)) for g, v in errors.items()}
    vis_scales = {b: robust_scale(np.concatenate(v)) for b, v in body_by_vis.items()}
    counts = {b: int(sum(len(x) for x in v)) for b, v in body_by_vis.items()}
    top = max(b for b in vis_scales if counts[b] > 20)
    reference = REFERENCE_CONFIDENCE * vis_scales[top]
    # hands and faces are capped at the best body confidence: untextured renders flatter them
    conf = {g: min(REFERENCE_CONFIDENCE, reference / s) for g, s in scales.items()}
    vis_conf = {b: (min(1.0, reference / s) if counts[b] > 20 else None) for b, s in vis_scales.items()}
    report = {"n": args.n, "detected": found, "image_size": [h, w],
              "error_scale_px_per_1000": scales, "body_scale_by_visibility": {str(VISIBILITY_BINS[b]): vis_scales[b]
                                                                               for b in vis_scales},
              "points_by_visibility": {str(VISIBILITY_BINS[b]): counts[b] for b in counts},
              "confidence": conf, "body_confidence_by_visibility": {str(VISIBILITY_BINS[b]): vis_conf[b]
                                                                    for b in vis_conf}}
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
