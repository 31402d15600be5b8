"""An EHF-like synthetic benchmark with exact ground truth: posed bodies, cameras, and 2D keypoints with an
OpenPose-like error model. Seeded and reproducible.

Until the pose-prior issue provides retargeted motion capture, body poses come from a documented set of
ten poses (POSES) with random perturbations; shapes from the model's prior (betas ~ N(0, 1)); hand poses
and expressions within their priors; cameras at realistic distances and focal lengths, EHF-sized images
(1600 x 1200). Keypoint errors: pixel noise growing from face to body to hands, detector-like confidences,
missed detections, and points hidden behind the body (a ray test against the posed mesh) dropped or given
low confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..keypoints.layout import BODY, CONTOUR, FACE, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND
from ..keypoints.regressors import KeypointRegressor
from ..keypoints.types import ImageKeypoints
from ..models.body_model import BodyModel
from ..models.lbs import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["POSES", "NoiseModel", "SyntheticSuite", "Observation", "generate", "observe", "hidden_keypoints",
           "mocap_test_poses"]

_DOWN = {"left_shoulder": [0, 0, -1.2], "right_shoulder": [0, 0, 1.2]}
POSES: dict[str, dict[str, list[float]]] = {
    # SMPL-X conventions: left arm along +x, raising it is +z, forward is -y; hips flex with -x, knees with +x
    "standing": dict(_DOWN),
    "arms raised": {"left_shoulder": [0, 0, 1.0], "right_shoulder": [0, 0, -1.0]},
    "walking": {"left_hip": [-0.5, 0, 0], "right_hip": [0.35, 0, 0], "right_knee": [0.5, 0, 0],
                "left_shoulder": [0, 0.4, -1.2], "right_shoulder": [0, 0.4, 1.2]},
    "sitting": {**_DOWN, "left_hip": [-1.4, 0, 0.1], "right_hip": [-1.4, 0, -0.1], "left_knee": [1.5, 0, 0],
                "right_knee": [1.5, 0, 0]},
    "crouching": {**_DOWN, "left_hip": [-1.9, 0, 0.2], "right_hip": [-1.9, 0, -0.2], "left_knee": [2.1, 0, 0],
                  "right_knee": [2.1, 0, 0], "spine1": [0.3, 0, 0]},
    "pointing": {"left_shoulder": [0, 0, -1.2], "right_shoulder": [0, 1.3, 0.1], "right_elbow": [0, 0.2, 0]},
    "turning away": dict(_DOWN),
    "hands near face": {"left_shoulder": [0, -0.9, -0.3], "right_shoulder": [0, 0.9, 0.3],
                        "left_elbow": [0, -2.2, 0], "right_elbow": [0, 2.2, 0]},
    "side view": {**_DOWN, "left_hip": [-0.3, 0, 0]},
    "reaching": {"left_shoulder": [0, 0, 1.3], "right_shoulder": [0, 0, 1.2], "spine2": [0, 0, 0.25],
                 "neck": [0.2, 0.3, 0]},
}  # fmt: skip
_YAW = {"turning away": math.pi, "side view": math.pi / 2}


def mocap_test_poses() -> np.ndarray:
    """(976, 63) body poses of the CMU motion-capture subjects held out from VPoser's training (subjects 16
    and 35; package data written by tools/retarget_cmu.py): the motion-capture suite's poses."""
    from importlib.resources import files

    with files("bodycapture").joinpath("data/mocap_test_poses.npz").open("rb") as fh:
        return np.load(fh)["body_pose"].astype(np.float64)


@dataclass
class NoiseModel:
    """OpenPose-like detection errors, in pixels of a 1200-pixel-high image (scaled to the image)."""

    sigma: dict = field(default_factory=lambda: {"body": 3.0, "hands": 4.0, "face": 1.5})
    confidence: dict = field(default_factory=lambda: {"body": 0.75, "hands": 0.5, "face": 0.7})
    missed: dict = field(default_factory=lambda: {"body": 0.03, "hands": 0.1, "face": 0.03})
    hidden_dropped: float = 0.7  # hidden points: dropped with this probability, else low confidence
    hidden_confidence: float = 0.2
    hidden_noise_factor: float = 3.0
    # simulated 3D world landmarks (MediaPipe-like: metric, hip-centred, camera axes); None: none given
    world_sigma: tuple[float, float, float] | None = None  # metres per axis (x, y, z); depth is the worst
    world_hidden_confidence: float = 0.3  # their confidence where the point is hidden (visible: 1)
    world_hidden_noise_factor: float = 2.0  # hidden points are guessed: more noise


@dataclass
class SyntheticSuite:
    """n images with one person each, and everything true about them (camera space, OpenCV axes)."""

    keypoints: list[ImageKeypoints]
    params: dict[str, Tensor]
    vertices: Tensor  # (n, V, 3)
    joints: Tensor  # (n, J, 3)
    keypoints3d: Tensor  # (n, 135, 3)
    keypoints2d: Tensor  # (n, 135, 2) noiseless projections
    hidden: Tensor  # (n, 135) bool
    focal: Tensor  # (n,)
    image_size: tuple[int, int]
    pose_names: list[str]
    gender: str


def hidden_keypoints(points3d: np.ndarray, vertices: np.ndarray, faces: np.ndarray, focal: float,
                     center: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """(K,) bool: is each keypoint behind the mesh (some triangle covers its pixel nearer to the camera
    by more than its tolerance)? Camera space: x right, y down, z forward. A vectorised ray test."""
    def project(p):
        return p[..., :2] / np.clip(p[..., 2:3], 1e-6, None) * focal + center

    tri = project(vertices[faces])  # (F, 3, 2)
    tri_z = vertices[faces][..., 2]  # (F, 3)
    kp = project(points3d)  # (K, 2)
    lo, hi = tri.min(1), tri.max(1)
    out = np.zeros(len(points3d), dtype=bool)
    for k in range(len(points3d)):  # 135 points, each tested against every triangle at once
        cand = np.nonzero((lo[:, 0] <= kp[k, 0]) & (hi[:, 0] >= kp[k, 0]) & (lo[:, 1] <= kp[k, 1])
                          & (hi[:, 1] >= kp[k, 1]))[0]
        if not len(cand):
            continue
        a, b, c = tri[cand, 0], tri[cand, 1], tri[cand, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        area = np.where(np.abs(area) < 1e-12, 1e-12, area)
        w1 = ((kp[k, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (kp[k, 1] - a[:, 1])) / area
        w2 = ((b[:, 0] - a[:, 0]) * (kp[k, 1] - a[:, 1]) - (kp[k, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])) / area
        w0 = 1 - w1 - w2
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        z = w0 * tri_z[cand, 0] + w1 * tri_z[cand, 1] + w2 * tri_z[cand, 2]
        out[k] = bool((inside & (z < points3d[k, 2] - tolerance[k])).any())
    return out


def _tolerances(regressor: KeypointRegressor) -> np.ndarray:
    """Joints lie inside the body: a surface in front of them hides them only when it is more than a limb's
    half-thickness nearer (10 cm). Surface points (vertices, landmarks) are hidden by anything 1.5 cm nearer."""
    tol = np.full(NUM_KEYPOINTS, 0.015)
    joint_slots = regressor.perm.numpy() < len(regressor.joint_idx)
    tol[joint_slots & regressor.mask.numpy()] = 0.10
    return tol


def generate(model: BodyModel, n: int = 100, seed: int = 0, image_size: tuple[int, int] = (1200, 1600),
             noise: NoiseModel | None = None, body_poses: np.ndarray | None = None) -> SyntheticSuite:
    """n synthetic images (one person each) for `model`, reproducible for a seed.

    body_poses: (M, 63) real poses to draw from (e.g. held-out motion capture) instead of POSES."""
    noise = noise or NoiseModel()
    rng = np.random.default_rng(seed)
    h, w = image_size
    names = [list(POSES)[i % len(POSES)] for i in range(n)]
    joint_names = model.joint_names
    body = np.zeros((n, 21, 3))
    for i, name in enumerate(names):
        for joint, aa in POSES[name].items():
            body[i, joint_names.index(joint) - 1] = aa
    body += rng.normal(scale=0.08, size=body.shape)
    if body_poses is not None:  # real poses, unperturbed
        pick = rng.choice(len(body_poses), n, replace=len(body_poses) < n)
        body = np.asarray(body_poses, dtype=np.float64)[pick].reshape(n, 21, 3)
        names = [f"mocap {i}" for i in pick]
    facing = np.array([math.pi, 0.0, 0.0])
    yaw = np.array([_YAW.get(name, 0.0) for name in names]) + rng.uniform(-0.6, 0.6, n)
    orient = matrix_to_axis_angle(
        axis_angle_to_matrix(torch.as_tensor(facing)).expand(n, 3, 3)
        @ axis_angle_to_matrix(torch.as_tensor(np.stack([np.zeros(n), yaw, np.zeros(n)], 1)))
    ).numpy()
    sizes = model.parameter_sizes()
    hand = sizes["left_hand_pose"]
    curl = rng.uniform(0, 0.5, (n, 1))
    params = {
        "betas": rng.normal(size=(n, sizes["betas"])),
        "expression": rng.normal(scale=0.7, size=(n, sizes.get("expression", 0))),
        "body_pose": body.reshape(n, -1),
        "global_orient": orient,
        "left_hand_pose": rng.normal(scale=0.15, size=(n, hand)),
        "right_hand_pose": rng.normal(scale=0.15, size=(n, hand)),
        "jaw_pose": np.stack([rng.uniform(0, 0.25, n), np.zeros(n), np.zeros(n)], 1),
    }
    if hand == 45:  # curl the fingers a little (about -z on the left hand, +z on the right)
        params["left_hand_pose"][:, 2::3] -= curl
        params["right_hand_pose"][:, 2::3] += curl
    focal = rng.uniform(1000, 2200, n)
    frac = rng.uniform(0.45, 0.9, n)  # body height as a fraction of the image height
    depth = focal * 1.7 / (frac * h)
    offset = rng.uniform(-0.25, 0.25, (n, 2)) * np.stack([w, h]) * (1 - frac[:, None]) / focal[:, None] * depth[:, None]
    params["transl"] = np.concatenate([offset, depth[:, None]], 1)
    dtype = model.v_template.dtype
    tensors = {k: torch.as_tensor(v, dtype=dtype, device=model.v_template.device) for k, v in params.items()
               if k in sizes and v.size}
    regressor = KeypointRegressor(model)
    with torch.no_grad():
        out = model(**tensors)
        kp3 = regressor(out)
    seen = observe(model, regressor, out, kp3, focal, image_size, noise, rng)
    keypoints = [ImageKeypoints(seen.points[i : i + 1], (h, w), None if seen.world is None else seen.world[i : i + 1],
                                f"synthetic:{seed}:{i}") for i in range(n)]
    return SyntheticSuite(
        keypoints=keypoints,
        params={k: torch.as_tensor(v) for k, v in params.items()},
        vertices=out.vertices.cpu(),
        joints=out.joints.cpu(),
        keypoints3d=kp3.cpu(),
        keypoints2d=torch.as_tensor(seen.kp2),
        hidden=torch.as_tensor(seen.hidden),
        focal=torch.as_tensor(focal),
        image_size=image_size,
        pose_names=names,
        gender=model.gender,
    )


@dataclass
class Observation:
    """What a detector would report of n posed bodies: points (n, 135, 3) x, y, confidence with the noise
    model's errors; kp2 (n, 135, 2) the noiseless projections; hidden (n, 135) keypoints behind the body;
    world (n, 25, 4) simulated 3D landmarks or None."""

    points: np.ndarray
    kp2: np.ndarray
    hidden: np.ndarray
    world: np.ndarray | None


def observe(model: BodyModel, regressor: KeypointRegressor, out, kp3: Tensor, focal: np.ndarray,
            image_size: tuple[int, int], noise: NoiseModel, rng: np.random.Generator) -> Observation:
    """Project n posed bodies (`out`, their keypoints `kp3` (n, 135, 3), camera space) through cameras with
    focal lengths (n,) centred on the image, and add OpenPose-like errors (NoiseModel): noise, confidences,
    missed points, hidden points dropped or doubted, points outside the image dropped."""
    h, w = image_size
    n = kp3.shape[0]
    center = np.array([w / 2, h / 2])
    kp3_np = kp3.double().cpu().numpy()
    kp2 = kp3_np[..., :2] / kp3_np[..., 2:3] * focal[:, None, None] + center
    verts = out.vertices.double().cpu().numpy()
    tol = _tolerances(regressor)
    available = regressor.mask.cpu().numpy()
    hidden = np.stack([hidden_keypoints(kp3_np[i], verts[i], model.faces, focal[i], center, tol) for i in range(n)])
    hidden &= available

    scale = h / 1200.0
    groups = {"body": BODY, "hands": np.r_[LEFT_HAND, RIGHT_HAND], "face": np.r_[FACE, CONTOUR]}
    points = np.zeros((n, NUM_KEYPOINTS, 3))
    for group, idx in groups.items():
        sigma = noise.sigma[group] * scale * np.where(hidden[:, idx], noise.hidden_noise_factor, 1.0)
        points[:, idx, :2] = kp2[:, idx] + rng.normal(size=(n, len(idx), 2)) * sigma[..., None]
        conf = np.clip(rng.normal(noise.confidence[group], 0.1, (n, len(idx))), 0.05, 1.0)
        conf = np.where(hidden[:, idx], noise.hidden_confidence, conf)
        drop = rng.random((n, len(idx))) < noise.missed[group]
        drop |= hidden[:, idx] & (rng.random((n, len(idx))) < noise.hidden_dropped)
        conf[drop | ~available[idx]] = 0.0
        points[:, idx, 2] = conf
    inside = (points[..., 0] >= 0) & (points[..., 0] <= w) & (points[..., 1] >= 0) & (points[..., 1] <= h)
    points[~inside] = 0.0
    world = None
    if noise.world_sigma is not None:  # BODY_25 points about the hips' midpoint, with noise per axis
        body3 = kp3_np[:, BODY] - kp3_np[:, 8:9]
        world = np.zeros((n, 25, 4))
        factor = np.where(hidden[:, BODY], noise.world_hidden_noise_factor, 1.0)[..., None]
        world[..., :3] = body3 + rng.normal(size=body3.shape) * np.asarray(noise.world_sigma) * factor
        world[..., 3] = np.where(hidden[:, BODY], noise.world_hidden_confidence, 1.0) * available[BODY]
    return Observation(points, kp2, hidden, world)
