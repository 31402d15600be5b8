"""`ImageKeypoints`: the 2D keypoints of the people in one image, in our layout (see layout.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BodyCaptureError
from .layout import NUM_KEYPOINTS

__all__ = ["ImageKeypoints", "KeypointFileError", "midpoint"]


class KeypointFileError(BodyCaptureError, ValueError):
    """A keypoint file that cannot be read: names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class ImageKeypoints:
    """Keypoints of P people in one image.

    points: (P, 135, 3) pixel x (right), y (down), confidence in [0, 1]; confidence 0 means "not
        detected" and then x = y = 0, as in OpenPose files.
    image_size: (height, width) in pixels, when known.
    world: (P, 25, 4) metric 3D BODY_25 points (x, y, z, confidence) when the detector gives them
        (MediaPipe's hip-centred world landmarks), else None.
    source: where they came from (a file path, or 'mediapipe').
    boxes: (P, 4) each person's box x0, y0, x1, y1 in pixels (the detector's, or the detected points').
    scores: (P,) the person detector's score of each person.
    visibility: (P, 25) MediaPipe's raw visibility of each BODY_25 point (0 where not detected).
    The last three are None when unknown (e.g. read from an OpenPose file without our side file).
    """

    points: np.ndarray
    image_size: tuple[int, int] | None = None
    world: np.ndarray | None = None
    source: str = ""
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    visibility: np.ndarray | None = None

    def __post_init__(self):
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
        missing = self.points[..., 2] <= 0
        self.points[missing] = 0.0
        for name, shape in (("boxes", (4,)), ("scores", ()), ("visibility", (25,))):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value, dtype=np.float64).reshape((self.num_people, *shape)))

    def take(self, people) -> "ImageKeypoints":
        """The people at indices `people` (a list or array), with everything known about them."""
        idx = np.asarray(people, dtype=np.int64).reshape(-1)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return ImageKeypoints(self.points[idx], self.image_size, pick(self.world), self.source,
                              pick(self.boxes), pick(self.scores), pick(self.visibility))

    @property
    def num_people(self) -> int:
        return self.points.shape[0]

    @classmethod
    def empty(cls, image_size=None, source: str = "") -> "ImageKeypoints":
        return cls(np.zeros((0, NUM_KEYPOINTS, 3)), image_size, None, source)


def midpoint(points: np.ndarray, a: int, b: int) -> np.ndarray:
    """Mean of points a and b over the last-but-one axis, (..., K, 3) -> (..., 3); its confidence is the
    smaller one, and it is missing (all zero) when either is missing."""
    pa, pb = points[..., a, :], points[..., b, :]
    conf = np.minimum(pa[..., 2], pb[..., 2])
    out = np.concatenate([(pa[..., :2] + pb[..., :2]) / 2, conf[..., None]], -1)
    return np.where(conf[..., None] > 0, out, 0.0)
