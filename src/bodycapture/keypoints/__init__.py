"""Keypoints: our OpenPose-style layout, keypoint files, the MediaPipe detector, model-to-keypoint maps.

`KeypointRegressor` (which needs torch) is imported on first use, so that reading keypoint files and
detecting does not import torch.
"""

from .layout import FLIP, GROUPS, NAMES, NUM_KEYPOINTS
from .openpose import read_keypoints, read_openpose, write_openpose
from .types import ImageKeypoints, KeypointFileError

__all__ = [
    "FLIP",
    "GROUPS",
    "NAMES",
    "NUM_KEYPOINTS",
    "read_keypoints",
    "read_openpose",
    "write_openpose",
    "KeypointRegressor",
    "ImageKeypoints",
    "KeypointFileError",
]


def __getattr__(name: str):
    if name == "KeypointRegressor":
        from .regressors import KeypointRegressor

        return KeypointRegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
