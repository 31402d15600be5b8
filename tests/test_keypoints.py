"""Keypoint layout, files (OpenPose, COCO-WholeBody, npz) and model-to-keypoint regressors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.keypoints import FLIP, GROUPS, NAMES, KeypointFileError, KeypointRegressor, read_keypoints
from bodycapture.keypoints.layout import BODY_25, CONTOUR, FACE, IGNORED_BY_DEFAULT, LEFT_HAND, RIGHT_HAND, flip_keypoints
from bodycapture.keypoints.openpose import read_npz, write_npz, write_openpose
from bodycapture.keypoints.types import ImageKeypoints
from bodycapture.models.lbs import axis_angle_to_matrix

from conftest import make_arrays, make_model

DATA = Path(__file__).resolve().parent / "data"
OPENPOSE_FILE = DATA / "openpose" / "lsp_im1010_keypoints.json"
B = BODY_25.index


def test_layout_sizes_groups_and_ignored_points():
    assert len(NAMES) == 135 == 25 + 21 + 21 + 51 + 17
    assert sum(len(g) for g in GROUPS.values()) == 135
    assert [BODY_25[i] for i in IGNORED_BY_DEFAULT] == ["Neck", "RHip", "LHip"]
    assert NAMES[LEFT_HAND[0]] == "left_wrist" and NAMES[RIGHT_HAND[-1]] == "right_pinky4"
    assert NAMES[FACE[0]] == "face17" and NAMES[CONTOUR[0]] == "face0"


def test_flip_is_an_involution_that_swaps_sides():
    assert np.array_equal(FLIP[FLIP], np.arange(135))
    for i, j in enumerate(FLIP):
        a, b = NAMES[i], NAMES[j]
        if a.startswith(("left_", "right_")):
            assert b == a.replace("left_", "X").replace("right_", "left_").replace("X", "right_")
        elif i < 25 and a[0] in "RL" and a[1].isupper():
            assert b == {"R": "L", "L": "R"}[a[0]] + a[1:]
    assert NAMES[FLIP[B("Nose")]] == "Nose" and NAMES[FLIP[FACE[0]]] == "face26"  # brow ends swap
    assert NAMES[FLIP[CONTOUR[8]]] == "face8"  # the chin stays
    pts = np.random.default_rng(0).random((2, 135, 3)) * 100 + 1
    np.testing.assert_allclose(flip_keypoints(flip_keypoints(pts, 640), 640), pts)


def test_reads_the_real_openpose_file():
    kp = read_keypoints(OPENPOSE_FILE)
    assert kp.num_people == 1 and kp.world is None
    p = kp.points[0]
    np.testing.assert_allclose(p[B("Nose")], [66.4171, 47.0342, 0.614349])
    np.testing.assert_allclose(p[B("LShoulder")], [82.9632, 58.1474, 0.693141])
    np.testing.assert_allclose(p[B("RHeel")], [34.8817, 157.153, 0.490182])
    assert np.all(p[B("RElbow")] == 0)  # written as zeros: not detected
    assert np.all(p[FACE] == 0) and np.all(p[RIGHT_HAND] == 0)
    np.testing.assert_allclose(p[LEFT_HAND[0]], [76.6547, 100.644, 0.0328468])


def test_write_then_read_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    pts = rng.random((3, 135, 3)) * 500
    pts[0, 10:20] = 0  # undetected points
    pts[2, FACE] = 0
    world = rng.normal(size=(3, 25, 4))
    kp = ImageKeypoints(pts, (480, 640), world, "x")
    write_openpose(tmp_path / "a_keypoints.json", kp)
    back = read_keypoints(tmp_path / "a_keypoints.json")
    assert np.array_equal(back.points, kp.points) and np.array_equal(back.world, world)
    assert back.image_size == (480, 640)
    data = json.loads((tmp_path / "a_keypoints.json").read_text())
    assert len(data["people"][0]["face_keypoints_2d"]) == 210  # OpenPose's 70 face points
    write_npz(tmp_path / "a.npz", kp)
    assert np.array_equal(read_npz(tmp_path / "a.npz").points, kp.points)
    write_openpose(tmp_path / "none.json", ImageKeypoints.empty((10, 10)))
    assert read_keypoints(tmp_path / "none.json").num_people == 0


def test_openpose_format_1_0_and_coco18(tmp_path):
    body18 = np.arange(1, 55, dtype=float)  # 18 points with non-zero confidences
    (tmp_path / "old.json").write_text(json.dumps({"version": 1.0, "people": [{"pose_keypoints": body18.tolist()}]}))
    p = read_keypoints(tmp_path / "old.json").points[0]
    np.testing.assert_allclose(p[B("RHip")], body18[24:27])  # COCO-18 index 8 is RHip
    np.testing.assert_allclose(p[B("MidHip")][:2], (body18[24:26] + body18[33:35]) / 2)
    assert np.all(p[B("LBigToe")] == 0)


def one_line(path, match):
    with pytest.raises(KeypointFileError) as info:
        read_keypoints(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and match in msg, msg


def test_bad_files_give_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{people: [")
    one_line(tmp_path / "bad.json", "malformed JSON")
    (tmp_path / "short.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 74}]}))
    one_line(tmp_path / "short.json", "pose_keypoints_2d has 74 values, expected 75")
    (tmp_path / "hand.json").write_text(json.dumps({"people": [{"hand_left_keypoints_2d": [1.0] * 60}]}))
    one_line(tmp_path / "hand.json", "hand_left_keypoints_2d has 60 values")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    one_line(tmp_path / "other.json", "unknown keypoint format")
    one_line(tmp_path / "missing.json", "no such file")
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04garbage")
    one_line(tmp_path / "x.npz", "not a readable .npz")


def test_coco_wholebody(tmp_path):
    body = np.zeros((17, 3))
    body[:, :2] = np.arange(34).reshape(17, 2) + 10
    body[:, 2] = 2
    face = np.ones((68, 3))
    face[:, 0] = np.arange(68)
    ann = {"image_id": 7, "keypoints": body.ravel().tolist(), "foot_kpts": [5.0, 6.0, 2.0] * 6,
           "face_kpts": face.ravel().tolist(), "lefthand_kpts": [1.0, 2.0, 1.0] * 21, "righthand_kpts": [0.0] * 63}
    data = {"images": [{"id": 7, "file_name": "img7.jpg", "height": 480, "width": 640}], "annotations": [ann]}
    (tmp_path / "wb.json").write_text(json.dumps(data))
    kp = read_keypoints(tmp_path / "wb.json")
    p = kp.points[0]
    assert kp.image_size == (480, 640)
    np.testing.assert_allclose(p[B("LShoulder")], [20, 21, 1])  # COCO index 5 is left_shoulder
    np.testing.assert_allclose(p[B("Neck")], [(20 + 22) / 2, (21 + 23) / 2, 1])
    np.testing.assert_allclose(p[FACE][:, 0], np.arange(17, 68))
    np.testing.assert_allclose(p[CONTOUR][:, 0], np.arange(17))
    assert np.all(p[RIGHT_HAND] == 0) and np.all(p[LEFT_HAND][:, 2] == 1)


# ---------------------------------------------------------------------------------------------------
# model -> keypoints


def test_open_model_regressor_covers_everything():
    model = bodycapture.load_model(dtype=torch.float64)
    reg = KeypointRegressor(model)
    assert bool(reg.mask.all())
    out = model()
    kp = reg(out)[0]
    names = model.joint_names
    torch.testing.assert_close(kp[B("LShoulder")], out.joints[0, names.index("left_shoulder")])
    torch.testing.assert_close(kp[B("MidHip")], out.joints[0, names.index("pelvis")])
    ids = dict(zip(model.extras["keypoint_names"], model.extras["keypoint_vertex_ids"]))
    torch.testing.assert_close(kp[B("Nose")], out.vertices[0, ids["nose"]])
    torch.testing.assert_close(kp[LEFT_HAND[4]], out.vertices[0, ids["lthumb"]])  # thumb tip
    torch.testing.assert_close(kp[LEFT_HAND[5]], out.joints[0, names.index("left_index1")])
    f, b = model.extras["lmk_faces_idx"][0], model.extras["lmk_bary_coords"][0]
    expected = (out.vertices[0, model.faces[f]] * torch.as_tensor(b, dtype=torch.float64)[:, None]).sum(0)
    torch.testing.assert_close(kp[FACE[0]], expected)
    # left is +x for the model (the subject's left)
    assert kp[B("LShoulder"), 0] > 0 > kp[B("RShoulder"), 0] and kp[B("LEye"), 0] > kp[B("REye"), 0]


def test_official_layouts_use_published_vertex_ids():
    smplx = make_model("smplx", arrays=make_arrays("smplx", num_vertices=10475, num_faces=500))
    kp = KeypointRegressor(smplx)(smplx())[0]
    torch.testing.assert_close(kp[B("Nose")], smplx().vertices[0, 9120])
    smpl = make_model("smpl", arrays=make_arrays("smpl", num_vertices=6890, num_faces=500))
    reg = KeypointRegressor(smpl)
    out = smpl()
    torch.testing.assert_close(reg(out)[0, B("RHeel")], out.vertices[0, 6787])
    # SMPL has no finger joints and no face: masked, and returned as zeros
    assert reg.mask[LEFT_HAND[0]] and reg.mask[LEFT_HAND[4]] and not reg.mask[LEFT_HAND[1]]
    assert not reg.mask[FACE].any() and torch.all(reg(out)[0, FACE] == 0)


def test_mano_flame_and_unknown_meshes_are_masked_not_guessed(caplog):
    mano = make_model("mano", arrays=make_arrays("mano", num_vertices=778))
    reg = KeypointRegressor(mano)
    assert reg.mask[RIGHT_HAND].all() and not reg.mask[LEFT_HAND].any() and not reg.mask[:25].any()
    torch.testing.assert_close(reg(mano())[0, RIGHT_HAND[12]], mano().vertices[0, 443])  # middle tip
    flame = make_model("flame")
    assert not KeypointRegressor(flame).mask.any()
    odd = make_model("smplx")  # 120 vertices: neither SMPL-X's mesh nor one with stored ids
    reg = KeypointRegressor(odd)
    assert "vertex keypoints are masked" in caplog.text
    assert reg.mask[B("LShoulder")] and not reg.mask[B("Nose")] and reg.mask[FACE].all()


def _dynamic_contour_model(seed: int):
    """A small SMPL-X model with a random 79-row dynamic contour table, and its arrays."""
    arrays = make_arrays("smplx")
    rng = np.random.default_rng(seed)
    arrays["dynamic_lmk_faces_idx"] = rng.integers(0, len(arrays["f"]), (79, 17))
    bary = rng.random((79, 17, 3))
    arrays["dynamic_lmk_bary_coords"] = bary / bary.sum(-1, keepdims=True)
    return make_model("smplx", arrays=arrays), arrays


def test_dynamic_contour_follows_head_yaw():
    model, arrays = _dynamic_contour_model(3)
    reg = KeypointRegressor(model)
    assert reg.dynamic_contour and reg.mask[CONTOUR].all()
    yaw = torch.tensor([-20.0, 0.0, 20.0, 60.0, -60.0], dtype=torch.float64).deg2rad()
    rots = torch.eye(3, dtype=torch.float64).repeat(5, 55, 1, 1)
    rots[:, model.joint_names.index("neck")] = axis_angle_to_matrix(torch.stack([0 * yaw, yaw, 0 * yaw], 1))
    assert reg.contour_rows(rots).tolist() == [20, 0, 59, 78, 39]  # beyond 39 degrees: the last row
    neck_pose = torch.zeros(1, 21, 3, dtype=torch.float64)
    neck_pose[0, 11, 1] = np.deg2rad(-20)  # body_pose joint 11 is the neck
    out = model(body_pose=neck_pose)
    kp = reg(out)[0, CONTOUR]
    faces = model.faces[arrays["dynamic_lmk_faces_idx"][20]]
    expected = (out.vertices[0, faces] * torch.as_tensor(arrays["dynamic_lmk_bary_coords"][20])[..., None]).sum(1)
    torch.testing.assert_close(kp, expected)


def test_keypoint_gradients_reach_the_parameters():
    model = bodycapture.load_model(dtype=torch.float64)
    reg = KeypointRegressor(model)
    pose = torch.zeros(1, 63, dtype=torch.float64, requires_grad=True)
    reg(model(body_pose=pose))[:, :25].sum().backward()
    assert pose.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["open", "smplx_dynamic_contour"])
def test_keypoint_model_gives_the_same_keypoints_and_gradients(kind):
    """The vertex-subset model behind the fitter's mesh-free stages is exact, gradients included."""
    from bodycapture.keypoints.regressors import keypoint_model

    if kind == "open":
        model = bodycapture.load_model(dtype=torch.float64)
    else:
        model, _ = _dynamic_contour_model(4)
    reg = KeypointRegressor(model)
    sub, sub_reg = keypoint_model(model, reg)
    assert sub.num_vertices == len(reg.vertex_ids()) <= model.num_vertices
    assert model.num_vertices == model.v_template.shape[0]  # the whole model is untouched
    gen = torch.Generator().manual_seed(0)
    params = {k: (0.4 * torch.randn(v.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
              for k, v in model.zero_parameters(6).items()}
    full = reg(model(**params))
    grads = torch.autograd.grad((full * torch.arange(full.numel()).reshape(full.shape).sin()).sum(), list(params.values()))
    fast = sub_reg(sub(**params))
    fast_grads = torch.autograd.grad((fast * torch.arange(fast.numel()).reshape(fast.shape).sin()).sum(),
                                     list(params.values()))
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-12)
    for a, b in zip(fast_grads, grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
