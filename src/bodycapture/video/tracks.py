"""Linking the people detected in each frame into tracks: one id per person across a clip.

An online tracker: each track predicts its box in the next frame (constant velocity), and the detections
of a frame are matched to the tracks by a mix of box overlap (IoU with the predicted box) and keypoint
similarity (an OKS-like score on the body points both have, after moving the track's last keypoints with
its predicted box), best pairs first. A track may miss up to `max_gap` frames (occlusion, a missed
detection) and still be continued; detections left over start new tracks. Velocity is what keeps two
people apart when they cross: at the crossing their boxes overlap, their predicted boxes do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..keypoints.layout import BODY

__all__ = ["TrackerConfig", "Tracker", "link_tracks", "box_iou", "keypoint_similarity"]


@dataclass
class TrackerConfig:
    """max_gap: frames a track may go unseen and still be continued. min_affinity: the least affinity
    (0..1) that matches a detection to a track. keypoint_weight: the share of keypoint similarity in the
    affinity (the rest is box overlap). velocity_smoothing: how much of a track's velocity is kept per update
    (the rest is the newest displacement)."""

    max_gap: int = 5
    min_affinity: float = 0.2
    keypoint_weight: float = 0.5
    velocity_smoothing: float = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boxes (N, 4), (M, 4) as x0, y0, x1, y1 -> (N, M) intersection over union."""
    a, b = np.asarray(a, dtype=np.float64)[:, None], np.asarray(b, dtype=np.float64)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]).clip(0) * (x[..., 3] - x[..., 1]).clip(0)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def keypoint_similarity(a: np.ndarray, b: np.ndarray, scale: np.ndarray, kappa: float = 0.1) -> np.ndarray:
    """Body keypoints (N, 135, 3), (M, 135, 3) and a size per row of `a` (N,) in pixels -> (N, M): the mean
    over the body points detected in both of exp(-d^2 / (2 (kappa scale)^2)) (COCO's OKS, one kappa);
    0 where they share no point."""
    pa, pb = np.asarray(a, dtype=np.float64)[:, None, BODY], np.asarray(b, dtype=np.float64)[None, :, BODY]
    both = (pa[..., 2] > 0) & (pb[..., 2] > 0)  # (N, M, 25)
    d2 = ((pa[..., :2] - pb[..., :2]) ** 2).sum(-1)
    sigma2 = (kappa * np.maximum(np.asarray(scale, dtype=np.float64), 1.0))[:, None, None] ** 2
    score = np.where(both, np.exp(-d2 / (2 * sigma2)), 0.0).sum(-1)
    return score / np.maximum(both.sum(-1), 1)


@dataclass
class _Track:
    id: int
    box: np.ndarray  # (4,) at frame `seen`
    keypoints: np.ndarray | None  # (135, 3) at frame `seen`
    seen: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per frame

    def predicted_box(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.seen)


class Tracker:
    """Feed it the people of each frame in order (`update`); it answers with their track ids."""

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def issued(self) -> int:
        """How many track ids were given so far (ids are 0, 1, 2, ... in the order tracks start)."""
        return self._next_id

    def update(self, frame: int, boxes: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
        """boxes (P, 4) x0, y0, x1, y1 in pixels and keypoints (P, 135, 3) (optional) of the people detected
        in `frame` (frames in increasing order, gaps allowed) -> (P,) int track ids."""
        cfg = self.config
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self._tracks = [t for t in self._tracks if frame - t.seen <= cfg.max_gap + 1]
        ids = np.full(len(boxes), -1, dtype=np.int64)
        if self._tracks and len(boxes):
            affinity = self._affinity(frame, boxes, keypoints)
            order = np.dstack(np.unravel_index(np.argsort(-affinity, axis=None), affinity.shape))[0]
            used_t, used_d = set(), set()
            for t, d in order:  # best pairs first
                if affinity[t, d] < cfg.min_affinity:
                    break
                if t in used_t or d in used_d:
                    continue
                used_t.add(t)
                used_d.add(d)
                self._continue(self._tracks[t], frame, boxes[d], None if keypoints is None else keypoints[d])
                ids[d] = self._tracks[t].id
        for d in np.nonzero(ids < 0)[0]:
            track = _Track(self._next_id, boxes[d].copy(), None if keypoints is None else np.asarray(keypoints[d]), frame)
            self._tracks.append(track)
            ids[d] = track.id
            self._next_id += 1
        return ids

    def _affinity(self, frame: int, boxes: np.ndarray, keypoints: np.ndarray | None) -> np.ndarray:
        """(tracks, detections) affinity in 0..1."""
        predicted = np.stack([t.predicted_box(frame) for t in self._tracks])
        iou = box_iou(predicted, boxes)
        w = self.config.keypoint_weight
        if keypoints is None or w == 0 or any(t.keypoints is None for t in self._tracks):
            return iou
        shift = (predicted[:, :2] + predicted[:, 2:]) / 2 - np.stack([(t.box[:2] + t.box[2:]) / 2 for t in self._tracks])
        moved = np.stack([t.keypoints for t in self._tracks]).copy()
        moved[..., :2] += shift[:, None]
        size = np.maximum(predicted[:, 2] - predicted[:, 0], predicted[:, 3] - predicted[:, 1])
        return (1 - w) * iou + w * keypoint_similarity(moved, keypoints, size)

    def _continue(self, track: _Track, frame: int, box: np.ndarray, keypoints: np.ndarray | None) -> None:
        step = (box - track.box) / max(frame - track.seen, 1)
        s = self.config.velocity_smoothing
        track.velocity = s * track.velocity + (1 - s) * step
        track.box, track.seen = box.copy(), frame
        if keypoints is not None:
            track.keypoints = np.asarray(keypoints)


def link_tracks(boxes: list[np.ndarray], keypoints: list[np.ndarray] | None = None, frames: list[int] | None = None,
                config: TrackerConfig | None = None) -> list[np.ndarray]:
    """The people of a clip's frames -> a track id per person per frame. boxes: per frame (P_t, 4);
    keypoints: per frame (P_t, 135, 3) or None; frames: the frame numbers (default 0, 1, 2, ...)."""
    tracker = Tracker(config)
    frames = list(range(len(boxes))) if frames is None else frames
    return [tracker.update(f, b, None if keypoints is None else keypoints[i]) for i, (f, b) in enumerate(zip(frames, boxes))]
