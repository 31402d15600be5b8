"""Sequence fitting against fitting each frame alone, on the synthetic video suite.

    python benchmarks/video_fit.py [--clips all] [--frames N] [--no-baseline] [--landmarks3d] [--threads 1]

Each held-out clip (evaluation/video.py: motion capture posed on the open model, one shape, a fixed camera,
per-frame detector-like 2D keypoints; the true focal length given) is fitted twice:
- baseline: every frame on its own (`bodycapture.fit`, the frames of a clip in batches of 32, independent
  items), as `bodycapture fit` fits photos;
- sequence: `SequenceFitter` (video/sequence.py, default SequenceConfig), fed 64 frames at a time as the
  clip pipeline feeds it.
Per clip: PA-MPJPE of the body joints (mean over frames, and frames over 200 mm), the acceleration error
and the acceleration (root-relative body joints, mm per frame squared), the truth's acceleration, and the
fitting speed in frames per second (one person). Means over all frames of all clips (every frame counts;
none is left out). Figures go to docs/video_fit.json. Run it on an idle machine.
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
from bodycapture.evaluation.runner import LANDMARKS_3D
from bodycapture.evaluation.synthetic import NoiseModel
from bodycapture.evaluation.video import acceleration, acceleration_error, mocap_test_clips, synthetic_clip
from bodycapture.fitting import FitConfig
from bodycapture.pipeline import load_fit_model
from bodycapture.video.sequence import SequenceConfig, SequenceFitter

ROOT = Path(__file__).resolve().parents[1]
BODY_JOINTS = 22
CHUNK = 64  # frames per SequenceFitter.fit call (two windows), as video/capture.py feeds it
BASELINE_BATCH = 32


def _scores(pred: torch.Tensor, true: torch.Tensor, seconds: float) -> dict:
    per_frame = pa_mpjpe(pred, true) * 1000
    return {"pa_mpjpe_mm": round(float(per_frame.mean()), 1), "frames_over_200mm": int((per_frame > 200).sum()),
            "accel_error": round(acceleration_error(pred.numpy(), true.numpy()), 1),
            "accel_fit": round(acceleration(pred.numpy()), 1), "fps": round(len(pred) / seconds, 2),
            "_per_frame": per_frame.numpy().tolist()}


def baseline(model, clip) -> dict:
    config = FitConfig()
    config.focal_length = clip.focal
    joints, t0 = [], time.perf_counter()
    for s in range(0, len(clip.keypoints), BASELINE_BATCH):
        joints.append(bodycapture.fit(clip.keypoints[s : s + BASELINE_BATCH], model, config=config).joints)
    seconds = time.perf_counter() - t0
    return _scores(torch.cat(joints)[:, :BODY_JOINTS].double(), clip.joints[:, :BODY_JOINTS].double(), seconds)


def sequence(model, clip, config: SequenceConfig) -> dict:
    fitter = SequenceFitter(model, config, clip.image_size, focal_length=clip.focal)
    points = np.concatenate([k.points for k in clip.keypoints])
    world = None if clip.keypoints[0].world is None else np.concatenate([k.world for k in clip.keypoints])
    joints, t0 = [], time.perf_counter()
    for s in range(0, len(points), CHUNK):
        fit = fitter.fit({0: points[s : s + CHUNK]}, None if world is None else {0: world[s : s + CHUNK]})[0]
        assert fit.start == 0 and len(fit.joints) == len(points[s : s + CHUNK])
        joints.append(torch.as_tensor(fit.joints))
    seconds = time.perf_counter() - t0
    return _scores(torch.cat(joints)[:, :BODY_JOINTS].double(), clip.joints[:, :BODY_JOINTS].double(), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", default=["all"], help="clip names, or 'all' (default)")
    parser.add_argument("--frames", type=int, help="the first N frames of each clip (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="only the sequence fit")
    parser.add_argument("--landmarks3d", action="store_true", help="also give simulated 3D landmarks")
    parser.add_argument("--key-every", type=int, help="SequenceConfig.key_every (default: its default)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "video_fit.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_fit_model()
    truth_model = bodycapture.load_model()
    noise = LANDMARKS_3D if args.landmarks3d else NoiseModel()
    names = list(mocap_test_clips()) if args.clips == ["all"] else args.clips
    config = SequenceConfig()
    if args.key_every:
        config.key_every = args.key_every
    rows, per_frame = [], {"baseline": [], "sequence": []}
    for name in names:
        clip = synthetic_clip(truth_model, name, seed=0, frames=args.frames, noise=noise)
        row = {"clip": name, "frames": len(clip.keypoints),
               "accel_truth": round(acceleration(clip.joints[:, :BODY_JOINTS].numpy()), 1)}
        methods = {"sequence": lambda: sequence(model, clip, config)}
        if not args.no_baseline:
            methods = {"baseline": lambda: baseline(model, clip), **methods}
        for method, run in methods.items():
            scores = run()
            per_frame[method] += scores.pop("_per_frame")
            row[method] = scores
        rows.append(row)
        print(json.dumps(row), flush=True)
    frames = sum(r["frames"] for r in rows)
    summary = {"frames": frames}
    for method in [m for m in ("baseline", "sequence") if per_frame[m]]:
        weights = np.array([r["frames"] for r in rows], dtype=float)
        summary[method] = {
            "pa_mpjpe_mm": round(float(np.mean(per_frame[method])), 1),
            "frames_over_200mm": int(np.sum(np.array(per_frame[method]) > 200)),
            "accel_error": round(float(np.average([r[method]["accel_error"] for r in rows], weights=weights)), 1),
            "fps": round(frames / sum(r["frames"] / r[method]["fps"] for r in rows), 2)}
    summary["accel_truth"] = round(float(np.average([r["accel_truth"] for r in rows],
                                                    weights=[r["frames"] for r in rows])), 1)
    report = {"landmarks3d": args.landmarks3d, "threads": args.threads, "sequence_config": {
        k: v for k, v in vars(config).items() if k != "fit"}, "clips": rows, "all_frames": summary}
    print(json.dumps(summary))
    out = args.out.with_name(args.out.stem + ("_landmarks3d" if args.landmarks3d else "") + args.out.suffix)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
