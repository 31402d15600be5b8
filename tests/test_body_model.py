"""BodyModel options: batching, dtypes, parameter handling, hand PCA, shape/expression columns."""

import numpy as np
import pytest
import torch

from bodycapture.models import model_data_from_arrays
from bodycapture.models.joint_names import JOINT_NAMES, PARENTS
from bodycapture.models.lbs import axis_angle_to_matrix

from conftest import FAMILIES, make_arrays, make_model, random_params

# The SMPL-X kinematic tree as published (../shared/reference/smplifyx.md section 3.1).
SMPLX_PUBLISHED_PARENTS = [
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15, 20, 25, 26, 20, 28, 29,
    20, 31, 32, 20, 34, 35, 20, 37, 38, 21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
]  # fmt: skip


def test_joint_orders_and_trees():
    assert PARENTS["smplx"] == SMPLX_PUBLISHED_PARENTS
    assert PARENTS["smpl"] == SMPLX_PUBLISHED_PARENTS[:22] + [20, 21]
    assert len(JOINT_NAMES["smplh"]) == 52 and len(JOINT_NAMES["mano"]) == 16 and len(JOINT_NAMES["flame"]) == 5
    names = JOINT_NAMES["smplx"]
    assert names[22:25] == ["jaw", "left_eye_smplhf", "right_eye_smplhf"]
    assert names[25:28] == ["left_index1", "left_index2", "left_index3"]
    assert names[52:55] == ["right_thumb1", "right_thumb2", "right_thumb3"]
    for fam in FAMILIES:
        assert all(p < j for j, p in enumerate(PARENTS[fam])), fam  # parents come first


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_of_one_and_of_seven_agree(family):
    model = make_model(family)
    params = random_params(model, batch=7, seed=4)
    together = model(**params)
    for b in range(7):
        alone = model(**{k: v[b : b + 1] for k, v in params.items()})
        torch.testing.assert_close(alone.vertices[0], together.vertices[b], atol=1e-12, rtol=0)
        torch.testing.assert_close(alone.joints[0], together.joints[b], atol=1e-12, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_float32_and_float64_agree(family):
    arrays = make_arrays(family)
    m64 = make_model(family, arrays=arrays, dtype=torch.float64)
    m32 = make_model(family, arrays=arrays, dtype=torch.float32)
    params = random_params(m64, batch=3, seed=5)
    out64 = m64(**params).vertices
    out32 = m32(**{k: v.float() for k, v in params.items()}).vertices
    assert out32.dtype == torch.float32
    assert (out32.double() - out64).abs().max() < 1e-5


def test_model_can_move_between_dtypes():
    model = make_model("smplx", dtype=torch.float32).double()
    assert model.v_template.dtype == torch.float64
    assert model(betas=torch.zeros(1, 10)).vertices.dtype == torch.float64


def test_missing_parameters_are_zero_and_broadcast():
    model = make_model("smplx", flat_hand_mean=True, batch_size=3)
    assert model().vertices.shape == (3, model.num_vertices, 3)  # no parameter: the model's batch size
    zero = model(betas=torch.zeros(1, 10)).vertices
    torch.testing.assert_close(zero[0], model.v_template)
    betas = torch.randn(5, 10, dtype=torch.float64)
    orient = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    out = model(betas=betas, global_orient=orient)  # (1, 3) broadcasts over B = 5
    assert out.vertices.shape == (5, model.num_vertices, 3)
    torch.testing.assert_close(out.vertices[2], model(betas=betas[2:3], global_orient=orient).vertices[0])
    torch.testing.assert_close(out.full_pose[:, :3], orient.expand(5, 3))
    assert torch.all(out.full_pose[:, 3:] == 0)


def test_parameter_errors_are_clear():
    model = make_model("smplx")
    with pytest.raises(TypeError, match="unknown parameter.*hand_pose"):
        model(hand_pose=torch.zeros(1, 6))
    with pytest.raises(ValueError, match="body_pose has 60 values per item, expected 63"):
        model(body_pose=torch.zeros(1, 60))
    with pytest.raises(ValueError, match="different batch sizes"):
        model(betas=torch.zeros(2, 10), body_pose=torch.zeros(3, 63))


def test_pose_accepts_per_joint_layout_and_rotation_matrices():
    model = make_model("smplh", use_pca=False, flat_hand_mean=True)
    params = random_params(model, batch=2, seed=6)
    aa = model(**params)
    per_joint = model(**{k: v.reshape(2, -1, 3) if k.endswith(("pose", "orient")) else v for k, v in params.items()})
    torch.testing.assert_close(aa.vertices, per_joint.vertices)
    mats = {
        k: axis_angle_to_matrix(v.reshape(2, -1, 3)) if k.endswith(("pose", "orient")) else v for k, v in params.items()
    }
    as_matrices = model(pose2rot=False, **mats)
    torch.testing.assert_close(aa.vertices, as_matrices.vertices, atol=1e-12, rtol=0)
    assert as_matrices.full_pose.shape == (2, 52, 3, 3)


def test_hand_pca_coefficients_and_means():
    arrays = make_arrays("smplx")
    pca = make_model("smplx", arrays=arrays, use_pca=True, num_pca_comps=12)
    full = make_model("smplx", arrays=arrays, use_pca=False)
    flat = make_model("smplx", arrays=arrays, use_pca=False, flat_hand_mean=True)
    coeffs = torch.randn(2, 12, dtype=torch.float64)
    out = pca(left_hand_pose=coeffs)
    left = slice(25 * 3, 40 * 3)
    expected = coeffs.numpy() @ arrays["hands_componentsl"][:12] + arrays["hands_meanl"]
    np.testing.assert_allclose(out.full_pose[:, left].numpy(), expected, atol=1e-12)
    # the right hand was not given: it is its mean pose (flat_hand_mean=False)
    np.testing.assert_allclose(out.full_pose[:, 40 * 3 :].numpy(), np.tile(arrays["hands_meanr"], (2, 1)), atol=1e-12)
    # the same pose given as 45 axis-angle values (mean subtracted) gives the same mesh
    axis_angle = torch.as_tensor(expected - arrays["hands_meanl"])
    torch.testing.assert_close(full(left_hand_pose=axis_angle).vertices, out.vertices, atol=1e-12, rtol=0)
    assert torch.all(flat().full_pose == 0)
    assert pca.parameter_sizes()["left_hand_pose"] == 12
    with pytest.raises(ValueError, match="num_pca_comps"):
        make_model("smplx", arrays=arrays, num_pca_comps=46)


def test_missing_hand_pca_needs_full_pose():
    arrays = {k: v for k, v in make_arrays("smplh").items() if not k.startswith("hands_")}
    with pytest.raises(ValueError, match="no hand PCA basis.*use_pca=False"):
        make_model("smplh", arrays=arrays, use_pca=True)
    model = make_model("smplh", arrays=arrays)  # no basis: axis-angle hands by default
    assert not model.use_pca and model.parameter_sizes()["left_hand_pose"] == 45
    assert torch.all(model().full_pose == 0)
    assert make_model("smplh").use_pca  # a real basis: PCA by default


@pytest.mark.parametrize("num_shape, expr_start", [(300, 300), (10, 10)])
def test_expression_columns_follow_the_official_layout(num_shape, expr_start):
    """SMPL-X v1.1: 300 shape then 100 expression columns; v1.0: 10 shape then 10 expression."""
    arrays = make_arrays("smplx", num_shape=num_shape, num_expression=10)
    data = model_data_from_arrays(arrays, family="smplx")
    assert (data.num_shape, data.num_expression) == (num_shape, 10)
    model = make_model("smplx", arrays=arrays, num_betas=4, num_expression_coeffs=5, flat_hand_mean=True)
    e = torch.zeros(1, 5, dtype=torch.float64)
    e[0, 2] = 1.0
    moved = model(expression=e).vertices[0] - model().vertices[0]
    np.testing.assert_allclose(moved.numpy(), arrays["shapedirs"][:, :, expr_start + 2], atol=1e-12)
    b = torch.zeros(1, 4, dtype=torch.float64)
    b[0, 3] = 1.0
    moved = model(betas=b).vertices[0] - model().vertices[0]
    np.testing.assert_allclose(moved.numpy(), arrays["shapedirs"][:, :, 3], atol=1e-12)


def test_number_of_components_is_checked():
    arrays = make_arrays("smplx", num_shape=10, num_expression=10)
    assert make_model("smplx", arrays=arrays).num_betas == 10
    with pytest.raises(ValueError, match="num_betas=16, but the file has 10"):
        make_model("smplx", arrays=arrays, num_betas=16)  # the smplx 'num_betas=16' pitfall, made loud
    assert make_model("smpl", arrays=make_arrays("smpl", num_shape=300), num_betas=300).num_betas == 300


def test_mano_and_flame_parameters():
    mano = make_model("mano", use_pca=True, num_pca_comps=9)
    assert set(mano.parameter_sizes()) == {"betas", "global_orient", "hand_pose", "transl"}
    assert mano(hand_pose=torch.randn(2, 9)).vertices.shape == (2, mano.num_vertices, 3)
    flame = make_model("flame")
    assert set(flame.parameter_sizes()) == {
        "betas", "expression", "global_orient", "neck_pose", "jaw_pose", "leye_pose", "reye_pose", "transl"
    }


def test_transl_moves_vertices_and_joints():
    model = make_model("smpl")
    t = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    base, moved = model(), model(transl=t)
    torch.testing.assert_close(moved.vertices, base.vertices + t[:, None])
    torch.testing.assert_close(moved.joints, base.joints + t[:, None])


def test_pose_given_as_rotation_matrices_equals_axis_angle():
    """A pose parameter may be (B, N, 3, 3) matrices in axis-angle mode (VPoser's output, no round trip)."""
    from bodycapture.models.lbs import axis_angle_to_matrix

    model = make_model("smplx", use_pca=False)
    params = random_params(model, 3, seed=4)
    reference = model(**params)
    mats = axis_angle_to_matrix(params["body_pose"].reshape(3, -1, 3))
    out = model(**{**params, "body_pose": mats})
    torch.testing.assert_close(out.vertices, reference.vertices, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.full_pose, reference.full_pose, atol=1e-8, rtol=0)
    # gradients flow through the matrices
    m = mats.clone().requires_grad_(True)
    model(**{**params, "body_pose": m}).vertices.sum().backward()
    assert m.grad is not None and m.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="body_pose: rotation matrices must be"):
        model(body_pose=mats[:, :5])


def test_the_joint_regression_is_an_exact_float64_product():
    from bodycapture.models.body_model import regress

    g = np.random.default_rng(4)
    regressor = np.where(g.random((6, 50)) < 0.3, g.random((6, 50)), 0.0).astype(np.float32)
    regressor[2] = 0  # a joint without weights regresses to zero
    values = g.standard_normal((50, 7)).astype(np.float32)
    out = regress(regressor, values)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, regressor.astype(np.float64) @ values.astype(np.float64), rtol=0, atol=1e-13)
    assert not out[2].any()
    # the same sums for a joint whatever the other joints are (numpy's own loops, no BLAS blocking)
    np.testing.assert_array_equal(regress(regressor[3:5], values), out[3:5])


def test_the_model_is_the_same_whatever_threads_numpy_started_with():
    """numpy's BLAS sums in an order that depends on its thread count (fixed when numpy loads): the open
    model's regressed joints, and so every fit, used to differ between the `bodycapture` command (one
    thread) and a Python program (as many as cores)."""
    import os
    import subprocess
    import sys

    code = ("import hashlib, bodycapture; m = bodycapture.load_model(); "
            "print(hashlib.sha1(m.joint_template.numpy().tobytes() + m.joint_shapedirs.numpy().tobytes()).hexdigest())")
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        digests.add(run.stdout.strip())
    assert len(digests) == 1
