"""Retargeting CMU motion capture to our model's body pose."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.io.bvh import euler_to_matrix, read_bvh

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "tests" / "data" / "mocap" / "16_48.bvh"


@pytest.fixture(scope="module")
def retarget():
    sys.path.insert(0, str(ROOT / "tools"))
    import retarget_cmu

    yield retarget_cmu
    sys.path.remove(str(ROOT / "tools"))


@pytest.fixture(scope="module")
def model():
    return bodycapture.load_model(dtype=torch.float64)


def test_euler_order_matches_bvh_convention():
    a = np.deg2rad(np.array([[30.0, -20.0, 45.0]]))
    rz = euler_to_matrix(a[:, :1], "z")
    ry = euler_to_matrix(a[:, 1:2], "y")
    rx = euler_to_matrix(a[:, 2:], "x")
    np.testing.assert_allclose(euler_to_matrix(a, "zyx"), rz @ ry @ rx, atol=1e-12)
    np.testing.assert_allclose(rz[0] @ [1.0, 0, 0], [np.cos(a[0, 0]), np.sin(a[0, 0]), 0], atol=1e-12)


def test_bone_directions_follow_the_mocap(retarget, model):
    bvh = read_bvh(CLIP)
    rest = model().joints[0].numpy()
    orient, pose = retarget.retarget(bvh, rest, {})  # without the rest calibration: every bone follows
    err = retarget.bone_direction_error(bvh, orient, pose, model)
    assert err.mean() < 2.0 and np.percentile(err, 99) < 10.0, (err.mean(), err.max())
    # calibrated (the default): the calibrated bones move, every other bone still follows
    orient, pose = retarget.retarget(bvh, rest)
    err = retarget.bone_direction_error(bvh, orient, pose, model)
    bones = [j for j in retarget.BODY if retarget.MAPPING[j][1] is not None]  # the error's columns
    moved = [bones.index(j) for j in retarget.REST_OFFSETS if j in bones]
    kept = [i for i in range(len(bones)) if i not in moved]
    assert err[:, kept].mean() < 2.0 and np.percentile(err[:, kept], 99) < 10.0
    assert err[:, moved].mean() > 5.0  # spine3, neck and the collars no longer copy CMU's rest shape


def test_left_arm_raised_raises_our_left_arm(retarget, model):
    bvh = read_bvh(CLIP)
    col = sum(len(c) for c in bvh.channels[: bvh.names.index("lhumerus")])
    bvh.motion = np.repeat(bvh.motion[:1], 2, 0)
    bvh.motion[0, col : col + 3] = [60.0, 0.0, 0.0]  # Zrotation: CMU's left arm (along +x) swings up ...
    bvh.motion[1, col : col + 3] = [-60.0, 0.0, 0.0]  # ... or down
    rest = model().joints[0].numpy()
    orient, pose = retarget.retarget(bvh, rest)
    out = model(body_pose=torch.as_tensor(pose.reshape(2, -1)))  # body frame: no global orientation
    names = model.joint_names
    left, right = names.index("left_wrist"), names.index("right_wrist")
    assert out.joints[0, left, 1] - out.joints[1, left, 1] > 0.3  # our left arm goes up
    torch.testing.assert_close(out.joints[0, right], out.joints[1, right])  # the right one does not move


def _world(body_pose: np.ndarray) -> np.ndarray:
    """(N, 63) local axis-angle -> (N, 22, 3, 3) world rotations of the body joints (root = identity)."""
    from bodycapture.models.joint_names import SMPLX_PARENTS
    from bodycapture.models.lbs import axis_angle_to_matrix

    local = axis_angle_to_matrix(torch.as_tensor(body_pose, dtype=torch.float64).reshape(-1, 21, 3)).numpy()
    world = np.zeros((len(body_pose), 22, 3, 3))
    world[:, 0] = np.eye(3)
    for j in range(1, 22):
        world[:, j] = world[:, SMPLX_PARENTS[j]] @ local[:, j - 1]
    return world


def test_rest_calibration_removes_the_mean_and_keeps_the_other_bones(retarget, model):
    rng = np.random.default_rng(0)
    n = 200
    pose = 0.3 * rng.standard_normal((n, 63))
    pose[:, 8 * 3] -= 0.4  # spine3 (body joint 9) bent forward in every pose
    pose[:, 12 * 3 + 2] += 0.5  # left collar (joint 13) raised in every pose
    train = np.arange(n) < 150
    joints = ["spine3", "left_collar"]
    calibrated, offsets = retarget.calibrate_rest(pose, train, joints)
    assert abs(offsets["spine3"][0] + 0.4) < 0.1 and abs(offsets["left_collar"][2] - 0.5) < 0.1
    from bodycapture.models.lbs import axis_angle_to_matrix, matrix_to_axis_angle

    R = axis_angle_to_matrix(torch.as_tensor(calibrated).reshape(-1, 21, 3))
    for j in (8, 12):  # the calibrated joints' chordal mean over the training rows is now the identity
        u, _, vt = torch.linalg.svd(R[torch.as_tensor(train), j].mean(0))
        assert matrix_to_axis_angle((u @ vt)[None]).norm() < 1e-6
    before, after = _world(pose), _world(calibrated)
    from bodycapture.models.joint_names import SMPLX_JOINTS

    for j in range(22):  # every bone that was not calibrated keeps its world orientation
        if SMPLX_JOINTS[j] not in joints:
            np.testing.assert_allclose(after[:, j], before[:, j], atol=1e-9)
    assert np.abs(after[:, 9] - before[:, 9]).max() > 0.1  # spine3 itself moved
