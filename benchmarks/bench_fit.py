"""Wall time of fitting, end to end and by stage, with objective-evaluation counts.

    python benchmarks/bench_fit.py [--device cpu|cuda] [--batch 1 8] [--no-collision] [--config FILE]

One real photo (tests/data/images/coco_623.jpg): detection once, then the fit of B copies of its person
in one batch (B people at once), with the interpenetration term (the default) or without. Reports
seconds per person and per stage (the median of --repeats fits), how many objective evaluations each
stage made (each evaluates the people still searching), and the time spent in the collision term.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import bodycapture
from bodycapture.fitting import FitConfig, fit
from bodycapture.keypoints.mediapipe import MediaPipeDetector, read_image
from bodycapture.keypoints.types import ImageKeypoints

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "coco_623.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--image", type=Path, default=PHOTO)
    parser.add_argument("--no-collision", action="store_true", help="fit without the interpenetration term")
    parser.add_argument("--threads", type=int, help="torch threads (default: as `bodycapture fit` chooses)")
    parser.add_argument("--repeats", type=int, default=3, help="the median of this many fits is reported")
    parser.add_argument("--config", type=Path, help="a fit config file (default: FitConfig's defaults)")
    args = parser.parse_args()
    from bodycapture.pipeline import choose_threads

    torch.set_num_threads(choose_threads(args.threads))
    if args.config is not None:
        from bodycapture.fitting.schedule import load_config

        config = load_config(args.config)
        config.interpenetration = config.interpenetration and not args.no_collision
    else:
        config = FitConfig(interpenetration=not args.no_collision)
    image = read_image(args.image)
    t = time.perf_counter()
    with MediaPipeDetector() as det:
        kp = det(image)
    detect_s = time.perf_counter() - t
    model = bodycapture.load_model(device=args.device)
    print(f"device={args.device} threads={torch.get_num_threads()} image={args.image.name} {image.shape[1]}x{image.shape[0]}"
          f" detection (incl. first-call cost) {detect_s:.2f} s")
    fit(kp, model, config, device=args.device)  # warm-up
    for batch in args.batch:
        many = ImageKeypoints(np.repeat(kp.points[:1], batch, 0), kp.image_size)
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            result = fit(many, model, config, device=args.device)
            runs.append((time.perf_counter() - t, result))
        total, result = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        stages = ", ".join(f"{s.name} {s.seconds:.2f} s / {s.evaluations} ev / {s.items} items" for s in result.stages)
        evals = sum(s.evaluations for s in result.stages)
        collision = sum(s.collision_seconds for s in result.stages)
        # per evaluation: comparable between code versions whose fits take different paths (any change of
        # rounding changes how many evaluations a fit makes)
        print(f"B={batch}: {total:.2f} s total, {total / batch:.2f} s per person, {evals} evaluations "
              f"({1000 * total / evals:.1f} ms each), collision term {collision:.2f} s; {stages}")


if __name__ == "__main__":
    main()
