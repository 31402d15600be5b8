"""People the person detector missed, found as silhouettes: MediaPipe's selfie segmentation (in the wheel,
`selfie_segmentation.tflite`) on the tiles around small people, and the blobs of its mask that nobody found
covers.

The person detector gives nothing, in any crop we tried, for some people in plain view (coco_357's crouched
catcher, coco_395's boy behind the man on the phone: benchmarks/missed_people.py), yet Holistic's pose model
reads them when given a region around them. The segmentation model, made for video calls, still outlines
small people in crowds and fields when it sees a tile around them: where its mask (probability over
MASK_THRESHOLD) holds a blob at least as tall as the smallest person kept, outside every found person's box
(widened by COVER_PAD of its height), the blob becomes upright seeds (hip centre at its centre, body radius
BLOB_RADII x its height, tried in turn), and a person is kept only where two of the pose model's regions
confirm one (mediapipe.REGION_VARIANTS). Measured on the 14 COCO photos (docs/evaluation.md: real photos).
"""

from __future__ import annotations

import numpy as np

from .person_seeds import PersonSeed

__all__ = ["PersonMasks", "probabilities", "uncovered_blobs", "blob_seeds"]

MASK_THRESHOLD = 0.5  # a pixel belongs to a person where the mask's probability is above this
COVER_PAD = 0.1  # a found person covers their keypoint box widened by this share of its height
BLOB_RADII = (0.6, 0.75)  # seed body radius / blob height (a standing body's radius is about 0.55 of it)
MAX_BLOBS = 4  # blobs looked at per image (the tallest first), two pose-model regions or four each


class PersonMasks:
    """MediaPipe's selfie segmentation (general model) over windows of an image: the probability that each
    pixel shows a person, the highest over the windows that hold it. One model per worker thread (a graph
    runs one image at a time; MediaPipe releases the GIL while it runs, so the caller's threads segment
    windows in parallel with `segment`, and `probabilities` puts them together; about 3 ms a window on one
    core of the 2-core VM)."""

    def __init__(self):
        self._models: list = []

    def prepare(self, workers: int) -> None:
        """Make the models of workers 0 .. workers - 1 (before the threads use them, not raced for in them)."""
        while len(self._models) < workers:
            from .mediapipe import _import_mediapipe

            self._models.append(_import_mediapipe().solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))

    def segment(self, image: np.ndarray, window: tuple[int, int, int], worker: int = 0) -> np.ndarray | None:
        """One square window (x0, y0, side) of (H, W, 3) uint8 RGB `image`, segmented by worker `worker`'s
        model (made first if need be: `prepare`) -> its (h, w) float32 probabilities, the window cut to the
        image (None if under 2 pixels)."""
        self.prepare(worker + 1)
        x, y, side = window
        tile = np.ascontiguousarray(image[y : y + side, x : x + side])
        if tile.shape[0] < 2 or tile.shape[1] < 2:
            return None
        return self._models[worker].process(tile).segmentation_mask[: tile.shape[0], : tile.shape[1]]

    def __call__(self, image: np.ndarray, windows: list[tuple[int, int, int]]) -> np.ndarray:
        """(H, W, 3) uint8 RGB and square windows (x0, y0, side) inside it -> (H, W) float32 in [0, 1]
        (0 outside every window), segmented one window after another."""
        return probabilities(image.shape[:2], windows, [self.segment(image, window) for window in windows])

    def close(self) -> None:
        for model in self._models:
            model.close()
        self._models = []


def probabilities(shape: tuple[int, int], windows: list[tuple[int, int, int]], masks: list) -> np.ndarray:
    """The windows' masks (PersonMasks.segment, None for a window left out) -> (H, W) float32: the highest
    probability over the windows that hold each pixel, 0 outside every window."""
    prob = np.zeros(shape, np.float32)
    for (x, y, _), mask in zip(windows, masks):
        if mask is not None:
            view = prob[y : y + mask.shape[0], x : x + mask.shape[1]]
            np.maximum(view, mask, out=view)
    return prob


def uncovered_blobs(prob: np.ndarray, covered: np.ndarray, min_height: float) -> list[tuple[np.ndarray, float]]:
    """Blobs of `prob` (H, W) over MASK_THRESHOLD outside the boxes `covered` (P, 4: x0, y0, x1, y1, each
    widened by COVER_PAD of its height) and at least `min_height` pixels tall: [(box (4,), mean probability)],
    the tallest first, at most MAX_BLOBS."""
    import cv2  # MediaPipe's own dependency (opencv-contrib-python)

    h, w = prob.shape
    mask = prob > MASK_THRESHOLD
    for x0, y0, x1, y1 in np.asarray(covered, float).reshape(-1, 4):
        pad = COVER_PAD * (y1 - y0)
        mask[int(max(y0 - pad, 0)) : int(min(y1 + pad, h)), int(max(x0 - pad, 0)) : int(min(x1 + pad, w))] = False
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    blobs = []
    for k in range(1, count):
        x, y, bw, bh = stats[k, :4]
        if bh >= min_height:
            blobs.append((np.array([x, y, x + bw, y + bh], float), float(prob[labels == k].mean())))
    blobs.sort(key=lambda b: -(b[0][3] - b[0][1]))
    return blobs[:MAX_BLOBS]


def blob_seeds(box: np.ndarray, score: float) -> list[PersonSeed]:
    """Upright seeds (PersonSeed.upright, needing confirmation) for a blob's box (4,): hip centre at its
    centre, body radius BLOB_RADII x its height."""
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return [PersonSeed.upright(score, centre, share * (box[3] - box[1]), needs_confirmation=True)
            for share in BLOB_RADII]
