"""Peak memory of the clip pipeline against clip length: it must stay flat (frames are streamed).

    python benchmarks/video_memory.py [--seconds 10 60] [--size 720 1280] [--no-overlay]

For each length a synthetic 30 fps video is written (flat frames), and a fresh process runs the whole clip
pipeline on it (`bodycapture.capture`: decoding, tracking, sequence fitting, the per-track files, the
second decode for overlay.mp4, report.html) with the detector replaced by one that hands out the synthetic
video suite's keypoints frame after frame (the held-out clips one after another, looped), so that the run
measures our pipeline, not MediaPipe. Reported per length: peak resident memory of the process (ru_maxrss),
wall time, and the pipeline's own timings. Figures go to docs/video_memory.json. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FPS = 30.0


class SuiteDetector:
    """The synthetic suite's people, one frame per call, looping over the clips."""

    def __init__(self, size):
        import bodycapture
        from bodycapture.evaluation.video import mocap_test_clips, synthetic_clip

        model = bodycapture.load_model()
        self.frames = []
        for name in mocap_test_clips():
            clip = synthetic_clip(model, name, seed=0, image_size=tuple(size), focal=1100.0 * size[0] / 720)
            self.frames += clip.keypoints
        self.calls = 0

    def __call__(self, image):
        kp = self.frames[self.calls % len(self.frames)]
        self.calls += 1
        seen = kp.points[0, kp.points[0, :, 2] > 0, :2]
        kp.boxes = np.concatenate([seen.min(0), seen.max(0)])[None]
        return kp

    def close(self):
        pass


def write_video(path: Path, frames: int, size) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (size[1], size[0]))
    for i in range(frames):
        writer.write(np.full((size[0], size[1], 3), 60 + (i % 120), np.uint8))
    writer.release()


def child(video: Path, size, overlay: bool) -> None:
    import torch

    import bodycapture
    from bodycapture.pipeline import CaptureOptions, capture

    torch.set_num_threads(1)
    config = bodycapture.FitConfig()
    config.focal_length = 1100.0 * size[0] / 720
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        report = capture(video, config=config, options=CaptureOptions(out=Path(out), progress=False, threads=1,
                                                                      overlay_video=overlay),
                         detector_factory=lambda: SuiteDetector(size))
    clip = report.clips[0]
    print(json.dumps({"frames": clip.frames, "tracks": len(clip.tracks), "status": clip.status,
                      "wall_s": round(time.perf_counter() - t0, 1),
                      "timings_s": {k: round(v, 1) for k, v in clip.timings.items()},
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--size", type=int, nargs=2, default=[720, 1280], metavar=("H", "W"))
    parser.add_argument("--no-overlay", action="store_true")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "video_memory.json")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, not args.no_overlay)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            video = Path(tmp) / f"clip_{seconds:g}s.mp4"
            write_video(video, int(round(seconds * FPS)), args.size)
            cmd = [sys.executable, __file__, "--child", str(video), "--size", *map(str, args.size)]
            if args.no_overlay:
                cmd.append("--no-overlay")
            run = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = {"seconds": seconds, **json.loads(run.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {"size": args.size, "fps": FPS, "overlay": not args.no_overlay, "threads": 1, "runs": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
