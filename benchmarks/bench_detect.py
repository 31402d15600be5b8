"""Speed of the bundled MediaPipe Holistic detector (CPU).

    python benchmarks/bench_detect.py [--repeats 20]

Reports the first-call cost (creating the detector and the first image, which loads the models) and the
median time per image at 640 x 480 and 1600 x 1200 (a COCO photo resized), conversion to our layout
included.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bodycapture.keypoints.mediapipe import MediaPipeDetector, read_image

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "images" / "coco_623.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=PHOTO)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    photo = Image.fromarray(read_image(args.image))
    sizes = {"640x480": (640, 480), "1600x1200": (1600, 1200)}
    images = {k: np.asarray(photo.resize(v, Image.BILINEAR)) for k, v in sizes.items()}

    start = time.perf_counter()
    detector = MediaPipeDetector()
    found = detector(images["640x480"])
    first = time.perf_counter() - start
    print(f"first call (create + first 640x480 image): {first * 1e3:.0f} ms, people found: {found.num_people}")
    for name, image in images.items():
        detector(image)
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            detector(image)
            times.append(time.perf_counter() - t)
        print(f"{name}: {statistics.median(times) * 1e3:.1f} ms per image (median of {args.repeats})")
    detector.close()


if __name__ == "__main__":
    main()
