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
    orient, pose = retarget.retarget(bvh, rest)
    err = retarget.bone_direction_error(bvh, orient, pose, model)
    assert err.mean() < 2.0 and np.percentile(err, 99) < 10.0, (err.mean(), err.max())


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
