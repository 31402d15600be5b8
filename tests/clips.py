"""Synthetic clips for the clip tests (test_video_capture.py, test_ray.py): two people crossing, a video
whose frame number is its grey level, and a detector that reads it back and returns the people's
keypoints of that frame (the pipeline around it is the real one)."""

import numpy as np

from bodycapture.evaluation.video import synthetic_clip
from bodycapture.keypoints.layout import NUM_KEYPOINTS
from bodycapture.keypoints.types import ImageKeypoints

FRAMES, SIZE, FOCAL = 30, (360, 640), 550.0
SHIFT = 140.0  # px: person A moves from -SHIFT to +SHIFT, person B the other way: they cross mid-clip


def _level(i: int) -> int:
    return 20 + 7 * i  # the grey level of frame i (up to frame 33; mp4 keeps levels 7 apart apart, not 6)


def frame_number(image: np.ndarray) -> int:
    """The frame number that `_level` wrote into a frame."""
    return int(round((float(image.mean()) - 20) / 7))


def _write_video(path, frames: int, size=SIZE, fps: float = 30.0):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for i in range(frames):
        writer.write(np.full((*size, 3), _level(i), np.uint8))
    writer.release()
    return path


def _shifted(points: np.ndarray, dx: float) -> np.ndarray:
    out = points.copy()
    seen = out[..., 2] > 0
    out[..., 0] = np.where(seen, out[..., 0] + dx, 0.0)
    return out


def crossing_people(model, frames: int = FRAMES):
    """Two synthetic people (two held-out clips, one shape each), moved so that they cross:
    (clip a, clip b, keypoints a (T, 135, 3), keypoints b)."""
    a = synthetic_clip(model, "16_11", seed=1, image_size=SIZE, focal=FOCAL, frames=frames)
    b = synthetic_clip(model, "16_08", seed=2, image_size=SIZE, focal=FOCAL, frames=frames)
    dx = np.linspace(-SHIFT, SHIFT, frames)
    kp_a = np.stack([_shifted(k.points[0], d) for k, d in zip(a.keypoints, dx)])
    kp_b = np.stack([_shifted(k.points[0], -d) for k, d in zip(b.keypoints, dx)])
    return a, b, kp_a, kp_b


class FakeDetector:
    """Returns the synthetic people of the frame whose grey level it sees (boxes from their keypoints)."""

    def __init__(self, kp_a, kp_b, people=2):
        self.kp = [kp_a, kp_b][:people]

    def __call__(self, image):
        i = frame_number(image)
        points = np.stack([k[i] for k in self.kp]) if self.kp else np.zeros((0, NUM_KEYPOINTS, 3))
        boxes = []
        for p in points:
            seen = p[p[:, 2] > 0, :2]
            boxes.append(np.concatenate([seen.min(0), seen.max(0)]))
        return ImageKeypoints(points, SIZE, None, "fake", np.array(boxes).reshape(-1, 4), np.ones(len(points)))

    def close(self):
        pass


