"""Keypoints: our OpenPose-style layout, keypoint files, the MediaPipe detector, model-to-keypoint maps."""

from .layout import FLIP, GROUPS, NAMES, NUM_KEYPOINTS
from .openpose import read_keypoints, read_openpose, write_openpose
from .regressors import KeypointRegressor
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
