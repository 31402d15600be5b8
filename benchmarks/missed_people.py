"""Why the people still missed are missed: does MediaPipe's person detector fire on them in any crop?

    python benchmarks/missed_people.py

For each counted person that `bodycapture fit` misses on the 14 COCO photos (docs/evaluation.md: real
photos), placed by eye (MISSED: a centre and a height in pixels), the wheel's person detector runs at the
low threshold (0.3) on square crops around the person: sides of 1.2-6 x the person's height, the centre
moved by a quarter of the height either way, mirrored or not (126 crops). It prints how many crops give a
detection whose hip centre lies within 0.35 heights of the person's centre, and the best of them. A
person found only in crops of 1.5-2.5 heights would need tiles about that small around them (the tile
search's finest tiles are a third of the short side); one found in none is beyond this detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bodycapture.keypoints import mediapipe as mp_keypoints
from bodycapture.keypoints.person_seeds import square_crop

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
# (photo, centre x y, height): by eye, 2026-12-01, the people missed that morning. Found since: the boy in
# stripes and the catcher (the segmentation mask), the dugout man (the closer look beside small people); the
# man in green, mostly hidden behind the man with the backpack, is not one of the counted five; the woman in
# grey (2026-12-02: the look behind, with the people found greyed out; not in any crop of the photo as it is).
MISSED = [
    ("coco_395.jpg", (122, 380), 210, "boy in stripes behind the man on the phone"),
    ("coco_544.jpg", (40, 268), 60, "seated man in the dugout"),
    ("coco_357.jpg", (580, 180), 25, "crouched catcher"),
    ("coco_257.jpg", (273, 365), 70, "food truck: woman in grey behind the man in black"),
    ("coco_257.jpg", (198, 362), 60, "food truck: man in green behind the man with the backpack"),
]
SIDES = (1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)  # crop side / the person's height
SHIFTS = (-0.25, 0.0, 0.25)  # the crop's centre moved by this share of the height, in x and in y
PX = 256  # crop side in pixels (the detector sees 224 x 224)


def main() -> None:
    with mp_keypoints.MediaPipeDetector() as detector:
        seeds = detector._get_seeds()
        for photo, centre, height, who in MISSED:
            image = mp_keypoints.read_image(SHARED / photo)
            centre = np.array(centre, float)
            hits = []
            for k in SIDES:
                for dx in SHIFTS:
                    for dy in SHIFTS:
                        for mirrored in (False, True):
                            side = k * height
                            crop, x0, y0 = square_crop(image, centre + np.array([dx, dy]) * height, side, PX)
                            if mirrored:
                                crop = np.ascontiguousarray(crop[:, ::-1])
                            for seed in seeds._run(crop, 0, 0, threshold=0.3):
                                hip = seed.hip.copy()
                                if mirrored:
                                    hip[0] = PX - hip[0]
                                hip = np.array([x0, y0]) + hip * side / PX
                                if np.linalg.norm(hip - centre) < 0.35 * height:
                                    hits.append((seed.score, k, dx, dy, mirrored))
            hits.sort(reverse=True)
            crops = len(SIDES) * len(SHIFTS) ** 2 * 2
            best = ", ".join(f"{s:.2f} (side {k} x, shift {dx:+.2f} {dy:+.2f}{', mirrored' if m else ''})"
                             for s, k, dx, dy, m in hits[:3])
            print(f"{photo} {who}: detected in {len(hits)} of {crops} crops" + (f"; best {best}" if hits else ""))


if __name__ == "__main__":
    main()
