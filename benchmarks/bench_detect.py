"""Speed of the bundled detector (CPU): every person of a photo, MediaPipe's person detector over the
photo and its tiles, then Holistic on one crop per person.

    python benchmarks/bench_detect.py [--images DIR] [--repeats 3] [--workers N]

Reports the first-call cost (creating the detector and the first photo, which loads the models), then per
photo the median time of `--repeats` runs and the people found, and a least-squares fit of
time = a + b x people over the photos (a: the person search, b: each person's Holistic crop), with the
machine's speed before and after (benchmarks/machine_speed.py).
Default photos: ../shared/data/images when present, else tests/data/images.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from bodycapture.keypoints.mediapipe import IMAGE_SUFFIXES, MediaPipeDetector, read_image
from machine_speed import describe, machine_speed  # benchmarks/machine_speed.py

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = ROOT.parent / "shared" / "data" / "images"
    parser.add_argument("--images", type=Path, default=shared if shared.is_dir() else ROOT / "tests" / "data" / "images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, help="threads searching the tiles (default: the detector's choice)")
    args = parser.parse_args()
    photos = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images = {p.name: read_image(p) for p in photos}
    print("before:", describe(machine_speed()), flush=True)  # and after: these VMs change speed by the hour

    start = time.perf_counter()
    detector = MediaPipeDetector(workers=args.workers)
    first = next(iter(images.values()))
    detector(first)
    print(f"first call (create + first photo): {(time.perf_counter() - start) * 1e3:.0f} ms")
    rows = []
    for name, image in images.items():
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            people = detector(image).num_people
            times.append(time.perf_counter() - t)
        rows.append((name, image.shape[1], image.shape[0], people, statistics.median(times)))
        print(f"{name} {image.shape[1]}x{image.shape[0]}: {people} people, {rows[-1][-1] * 1e3:.0f} ms "
              f"(median of {args.repeats})")
    n = np.array([r[3] for r in rows], dtype=float)
    t = np.array([r[4] for r in rows])
    a, b = np.linalg.lstsq(np.stack([np.ones_like(n), n], 1), t, rcond=None)[0]
    print(f"time per photo = {a * 1e3:.0f} ms + {b * 1e3:.0f} ms per person (least squares over {len(rows)} photos); "
          f"median per photo {np.median(t) * 1e3:.0f} ms, {n.sum():.0f} people in all")
    # the split into a and b moves with a few photos; the sum is steadier, and the target's own sum beside it
    print(f"the photos' medians sum to {t.sum():.2f} s; the target (0.3 s + 0.06 s per person) allows "
          f"{0.3 * len(rows) + 0.06 * n.sum():.2f} s")
    print("after:", describe(machine_speed()))
    detector.close()


if __name__ == "__main__":
    main()
