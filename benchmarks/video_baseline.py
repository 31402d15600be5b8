"""The video baseline: every frame of the synthetic clips fitted on its own, as `bodycapture fit` fits photos.

    python benchmarks/video_baseline.py [--frames 45] [--clips 16_11 16_08 35_18] [--landmarks3d] [--threads 1]

Each clip (evaluation/video.py: held-out motion capture posed on the open model, one shape, a fixed camera,
per-frame detector-like 2D keypoints; the true focal length given) is fitted frame by frame, the frames of a
clip in one batch (independent items). Reports per clip PA-MPJPE (body joints, mean over frames and the
count over 200 mm), the acceleration error and the acceleration of the fit and of the truth (root-relative
body joints, mm per frame squared), and seconds per frame. This is what sequence fitting must beat: the
video issue asks for an acceleration error at least 3x lower at equal or better PA-MPJPE.
Figures go to docs/video_baseline.json. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import bodycapture
from bodycapture.evaluation.metrics import pa_mpjpe
from bodycapture.evaluation.synthetic import NoiseModel
from bodycapture.evaluation.runner import LANDMARKS_3D
from bodycapture.evaluation.video import acceleration, acceleration_error, synthetic_clip
from bodycapture.fitting import FitConfig
from bodycapture.pipeline import load_fit_model

ROOT = Path(__file__).resolve().parents[1]
BODY_JOINTS = 22


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=45, help="the first N frames of each clip (30 fps)")
    parser.add_argument("--clips", nargs="+", default=["16_11", "16_08", "35_18"])
    parser.add_argument("--landmarks3d", action="store_true", help="also give simulated 3D landmarks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "video_baseline.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_fit_model()
    truth_model = bodycapture.load_model()
    noise = LANDMARKS_3D if args.landmarks3d else NoiseModel()
    rows = []
    for name in args.clips:
        clip = synthetic_clip(truth_model, name, seed=0, frames=args.frames, noise=noise)
        config = FitConfig()
        config.focal_length = clip.focal
        t0 = time.perf_counter()
        result = bodycapture.fit(clip.keypoints, model, config=config)
        seconds = time.perf_counter() - t0
        pred = result.joints[:, :BODY_JOINTS].double()
        true = clip.joints[:, :BODY_JOINTS].double()
        per_frame = pa_mpjpe(pred, true) * 1000
        row = {"clip": name, "frames": len(clip.keypoints), "pa_mpjpe_mm": round(float(per_frame.mean()), 1),
               "frames_over_200mm": int((per_frame > 200).sum()),
               "accel_error": round(acceleration_error(pred.numpy(), true.numpy()), 1),
               "accel_fit": round(acceleration(pred.numpy()), 1), "accel_truth": round(acceleration(true.numpy()), 1),
               "seconds_per_frame": round(seconds / len(clip.keypoints), 2)}
        rows.append(row)
        print(json.dumps(row))
    summary = {k: round(float(np.mean([r[k] for r in rows])), 2) for k in
               ("pa_mpjpe_mm", "accel_error", "accel_fit", "accel_truth", "seconds_per_frame")}
    report = {"landmarks3d": args.landmarks3d, "threads": args.threads, "clips": rows, "mean_over_clips": summary}
    print(json.dumps(summary))
    out = args.out.with_name(args.out.stem + ("_landmarks3d" if args.landmarks3d else "") + args.out.suffix)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
