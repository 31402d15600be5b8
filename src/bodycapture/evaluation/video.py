"""A synthetic video suite with exact ground truth, and the temporal metrics that video fitting is judged by.

`synthetic_clip` poses the model with a whole held-out motion-capture clip (package data
`mocap_test_clips.npz`: the VPoser test subjects' walks, turns, runs and jumps at 30 fps, written by
tools/retarget_cmu.py), one random shape for the clip, seen by a fixed camera, and observes every frame
with the still-image suite's detector-like errors (`synthetic.observe`: noise, confidences, missed and
hidden points) drawn independently per frame, as a per-frame detector's are.

Metrics (per clip, over frames): `acceleration_error` (the mean distance between the predicted and true
joint accelerations, root-relative, mm per frame squared: the jitter measure of HMMR and VIBE) and
`acceleration` (the same of the prediction alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import torch
from torch import Tensor

from ..io.results import VIEWER_TURN
from ..keypoints.regressors import KeypointRegressor
from ..keypoints.types import ImageKeypoints
from ..models.body_model import BodyModel
from ..models.lbs import axis_angle_to_matrix, matrix_to_axis_angle
from .synthetic import NoiseModel, observe

__all__ = ["SyntheticClip", "mocap_test_clips", "synthetic_clip", "acceleration_error", "acceleration"]

# motion-capture world (y up, the camera looking along -z) -> OpenCV camera: the viewer turn, its own inverse
CAMERA_TURN = VIEWER_TURN


def mocap_test_clips() -> dict[str, dict[str, np.ndarray]]:
    """The held-out clips: {clip name: global_orient (T, 3), body_pose (T, 63), root_position (T, 3) metres
    in the capture's world (y up)}, and the frame rate under the key 'fps' of each."""
    with files("bodycapture").joinpath("data/mocap_test_clips.npz").open("rb") as fh:
        z = np.load(fh)
        names, fps = z["clip"], float(z["fps"])
        out = {}
        for name in dict.fromkeys(names.tolist()):  # in file order
            rows = names == name
            out[name] = {k: z[k][rows].astype(np.float64) for k in ("global_orient", "body_pose", "root_position")}
            out[name]["fps"] = fps
    return out


@dataclass
class SyntheticClip:
    """T frames of one person, and everything true about them (camera space, OpenCV axes)."""

    name: str
    fps: float
    keypoints: list[ImageKeypoints]  # per frame, one person
    params: dict[str, Tensor]  # (T, n) each; betas the same in every frame
    vertices: Tensor  # (T, V, 3)
    joints: Tensor  # (T, J, 3)
    focal: float
    image_size: tuple[int, int]


def synthetic_clip(model: BodyModel, clip: str | None = None, seed: int = 0, image_size: tuple[int, int] = (720, 1280),
                   focal: float = 1100.0, noise: NoiseModel | None = None, frames: int | None = None) -> SyntheticClip:
    """One held-out clip (default: the first) posed on `model` with a random shape, a fixed camera placed so
    that the whole path stays in view (the person at most about 80 % of the image height), and per-frame
    detector-like 2D keypoints. frames: the first N frames only."""
    clips = mocap_test_clips()
    name = clip or next(iter(clips))
    if name not in clips:
        raise KeyError(f"no test clip {name!r}; there are {', '.join(clips)}")
    data = clips[name]
    T = len(data["body_pose"]) if frames is None else min(frames, len(data["body_pose"]))
    rng = np.random.default_rng(seed)
    h, w = image_size
    root = data["root_position"][:T]
    # the camera: on the clip's +z side, level with the mean hip height, far enough for the nearest point
    nearest = focal * 1.9 / (0.8 * h)  # metres from the camera to the nearest the person comes
    span_x = np.ptp(root[:, 0]) + 1.0
    distance = max(nearest, focal * span_x / (0.9 * w))
    camera = np.array([root[:, 0].mean(), root[:, 1].mean(), root[:, 2].max() + distance])
    sizes = model.parameter_sizes()
    betas = rng.normal(size=(1, sizes["betas"]))
    turn = torch.as_tensor(CAMERA_TURN)
    orient = matrix_to_axis_angle(turn @ axis_angle_to_matrix(torch.as_tensor(data["global_orient"][:T]))).numpy()
    params = {"betas": np.repeat(betas, T, 0), "body_pose": data["body_pose"][:T], "global_orient": orient}
    if "expression" in sizes:
        params["expression"] = np.zeros((T, sizes["expression"]))
    dtype, device = model.v_template.dtype, model.v_template.device
    as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    with torch.no_grad():
        pelvis = (model.joint_template[0] + (model.joint_shapedirs[0, :, : sizes["betas"]] @ as_t(betas[0]))).double().cpu().numpy()
    # the model's root turns about its pelvis joint: pelvis in camera space = pelvis_rest + transl
    params["transl"] = (root - camera) @ CAMERA_TURN.T - pelvis
    regressor = KeypointRegressor(model)
    with torch.no_grad():
        out = model(**{k: as_t(v) for k, v in params.items() if k in sizes})
        kp3 = regressor(out)
    seen = observe(model, regressor, out, kp3, np.full(T, focal), image_size, noise or NoiseModel(), rng)
    keypoints = [ImageKeypoints(seen.points[t : t + 1], (h, w), None if seen.world is None else seen.world[t : t + 1],
                                f"clip:{name}:{seed}:{t}") for t in range(T)]
    return SyntheticClip(name, data["fps"], keypoints, {k: torch.as_tensor(v) for k, v in params.items()},
                         out.vertices.cpu(), out.joints.cpu(), focal, image_size)


def _second_difference(x: np.ndarray) -> np.ndarray:
    """(T, J, 3) -> (T - 2, J, 3): x[t+1] - 2 x[t] + x[t-1]."""
    return x[2:] - 2 * x[1:-1] + x[:-2]


def _root_relative(joints: np.ndarray) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    return joints - joints[:, :1]


def acceleration_error(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean over frames and joints of |a_pred - a_true| in mm per frame squared, a = the second difference
    of the root-relative joints (T, J, 3) in metres (HMMR's and VIBE's acceleration error)."""
    diff = _second_difference(_root_relative(pred)) - _second_difference(_root_relative(true))
    return float(np.linalg.norm(diff, axis=-1).mean() * 1000.0)


def acceleration(pred: np.ndarray) -> float:
    """Mean |a| of the root-relative joints (T, J, 3) in metres, in mm per frame squared."""
    return float(np.linalg.norm(_second_difference(_root_relative(pred)), axis=-1).mean() * 1000.0)
