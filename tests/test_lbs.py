"""Linear blend skinning against an independent loop-based NumPy implementation, and its invariants."""

import math

import numpy as np
import pytest
import torch

from bodycapture.models.lbs import axis_angle_to_matrix, batch_rigid_transform, kinematic_levels

from conftest import FAMILIES, make_arrays, make_model, random_params


def rodrigues(v):
    a = np.linalg.norm(v)
    if a == 0:
        return np.eye(3)
    k = v / a
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * kx + (1 - np.cos(a)) * kx @ kx


def reference_forward(arrays, coeffs, cols, pose_aa, transl):
    """One item, written directly from the SMPL paper's equations with explicit loops over joints."""
    parents = arrays["kintree_table"][0].astype(np.int64)
    parents[0] = -1
    v_shaped = arrays["v_template"] + arrays["shapedirs"][:, :, cols] @ coeffs
    joints = arrays["J_regressor"] @ v_shaped
    rots = [rodrigues(p) for p in pose_aa]
    feature = np.concatenate([(r - np.eye(3)).ravel() for r in rots[1:]])
    v_posed = v_shaped + arrays["posedirs"] @ feature
    world = []
    for j, r in enumerate(rots):
        local = np.eye(4)
        local[:3, :3] = r
        local[:3, 3] = joints[j] - (joints[parents[j]] if parents[j] >= 0 else 0)
        world.append(local if parents[j] < 0 else world[parents[j]] @ local)
    posed_joints = np.stack([w[:3, 3] for w in world])
    out = np.zeros_like(v_posed)
    for j, w in enumerate(world):
        a = w.copy()
        a[:3, 3] -= w[:3, :3] @ joints[j]
        out += arrays["weights"][:, j : j + 1] * (v_posed @ a[:3, :3].T + a[:3, 3])
    return out + transl, posed_joints + transl


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_reference_implementation(family):
    arrays = make_arrays(family)
    model = make_model(family, arrays=arrays, use_pca=False, flat_hand_mean=True)
    params = random_params(model, batch=3, scale=0.5)
    out = model(**params)
    n_shape = 300 if family in ("smplx", "flame") else 12
    cols = list(range(model.num_betas)) + list(range(n_shape, n_shape + model.num_expression))
    for b in range(3):
        coeffs = params["betas"][b].numpy()
        if model.num_expression:
            coeffs = np.concatenate([coeffs, params["expression"][b].numpy()])
        verts, joints = reference_forward(
            arrays, coeffs, cols, out.full_pose[b].reshape(-1, 3).numpy(), params["transl"][b].numpy()
        )
        np.testing.assert_allclose(out.vertices[b].numpy(), verts, atol=1e-12)
        np.testing.assert_allclose(out.joints[b].numpy(), joints, atol=1e-12)


def test_zero_pose_gives_the_shaped_template():
    arrays = make_arrays("smplx")
    model = make_model("smplx", arrays=arrays, flat_hand_mean=True)
    betas = torch.randn(2, 10, dtype=torch.float64)
    expression = torch.randn(2, 6, dtype=torch.float64)
    out = model(betas=betas, expression=expression)
    dirs = np.concatenate([arrays["shapedirs"][:, :, :10], arrays["shapedirs"][:, :, 300:306]], 2)
    coeffs = torch.cat([betas, expression], 1).numpy()
    expected = arrays["v_template"][None] + np.einsum("vcs,bs->bvc", dirs, coeffs)
    np.testing.assert_allclose(out.vertices.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(out.joints.numpy(), np.einsum("jv,bvc->bjc", arrays["J_regressor"], expected), atol=1e-12)


def test_global_orient_rotates_every_vertex_about_the_root():
    model = make_model("smplx")
    params = random_params(model, batch=2)
    params["global_orient"] = torch.zeros(2, 3, dtype=torch.float64)
    params["transl"] = torch.zeros(2, 3, dtype=torch.float64)
    rest = model(**params)
    orient = torch.tensor([[0.3, -1.2, 0.5], [2.0, 0.1, -0.4]], dtype=torch.float64)
    turned = model(**{**params, "global_orient": orient})
    rot = axis_angle_to_matrix(orient)
    root = rest.joints[:, :1]
    expected = (rest.vertices - root) @ rot.transpose(1, 2) + root
    torch.testing.assert_close(turned.vertices, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(turned.joints, (rest.joints - root) @ rot.transpose(1, 2) + root, atol=1e-12, rtol=0)


def descendants(parents, joint):
    out = {joint}
    for j in range(len(parents)):
        if parents[j] in out:
            out.add(j)
    return out


@pytest.mark.parametrize("joint_name", ["left_elbow", "right_knee", "neck", "left_index1"])
def test_one_joint_moves_only_its_skinned_vertices(joint_name):
    arrays = make_arrays("smplx", num_vertices=400)
    model = make_model("smplx", arrays=arrays, use_pca=False, flat_hand_mean=True, use_pose_correctives=False)
    joint = model.joint_names.index(joint_name)
    pose = torch.zeros(1, 55, 3, dtype=torch.float64)
    pose[0, joint] = torch.tensor([0.4, -0.9, 0.3])
    slices = model.family.part_slices()
    params = {name: pose[:, s].reshape(1, -1) for name, s in slices.items()}
    moved = model(**params).vertices - model().vertices
    chain = sorted(descendants(model.parents.tolist(), joint))
    influenced = arrays["weights"][:, chain].sum(1) > 0
    assert influenced.any() and (~influenced).any()
    assert torch.all(moved[0, ~torch.as_tensor(influenced)].abs() == 0)
    assert torch.all(moved[0, torch.as_tensor(influenced)].norm(dim=-1) > 1e-6)


def test_kinematic_chain_levels_and_tree_errors():
    parents = torch.tensor([-1, 0, 1, 1, 3, 0])
    levels = kinematic_levels(parents)
    assert [lv.tolist() for lv in levels] == [[0], [1, 5], [2, 3], [4]]
    with pytest.raises(ValueError, match="root"):
        kinematic_levels(torch.tensor([-1, -1, 0]))
    with pytest.raises(ValueError, match="cycle"):
        kinematic_levels(torch.tensor([-1, 2, 1]))


def naive_world_transforms(rots, joints, parents):
    """Each joint's world transform by walking up to the root, one joint at a time."""
    B, J = joints.shape[:2]
    out = []
    for j in range(J):
        chain, k = [], j
        while k >= 0:
            chain.append(k)
            k = int(parents[k])
        world = torch.eye(4, dtype=joints.dtype).expand(B, 4, 4)
        for k in reversed(chain):  # root first
            local = torch.eye(4, dtype=joints.dtype).repeat(B, 1, 1)
            local[:, :3, :3] = rots[:, k]
            local[:, :3, 3] = joints[:, k] - (joints[:, parents[k]] if parents[k] >= 0 else 0)
            world = world @ local
        out.append(world)
    return torch.stack(out, 1)


@pytest.mark.parametrize("parents", [[-1, 0, 1, 1, 3, 0], [-1, 2, 0, 1, 0, 4, 5, 5]])  # the second: parents after children
def test_the_chain_walk_equals_a_joint_by_joint_walk(parents):
    from bodycapture.models.lbs import KinematicChain

    parents = torch.tensor(parents)
    chain = KinematicChain.from_parents(parents)
    assert len(chain.steps) == math.ceil(math.log2(len(kinematic_levels(parents))))  # pointer jumping
    g = torch.Generator().manual_seed(5)
    rots = axis_angle_to_matrix(torch.randn(3, len(parents), 3, generator=g, dtype=torch.float64))
    joints = torch.randn(3, len(parents), 3, generator=g, dtype=torch.float64)
    posed, transforms = batch_rigid_transform(rots, joints, parents, chain)
    world = naive_world_transforms(rots, joints, parents)
    torch.testing.assert_close(posed, world[:, :, :3, 3])
    torch.testing.assert_close(transforms[:, :, :3, :3], world[:, :, :3, :3])
    # the skinning transform maps each rest joint to its posed place
    rest = torch.cat([joints, torch.ones_like(joints[..., :1])], -1)
    torch.testing.assert_close((transforms @ rest[..., None])[..., :3, 0], posed)


def test_rigid_transform_is_identity_at_rest():
    joints = torch.randn(2, 6, 3, dtype=torch.float64)
    rots = torch.eye(3, dtype=torch.float64).expand(2, 6, 3, 3)
    posed, transforms = batch_rigid_transform(rots, joints, torch.tensor([-1, 0, 1, 1, 3, 0]))
    torch.testing.assert_close(posed, joints)
    torch.testing.assert_close(transforms, torch.eye(4, dtype=torch.float64).expand(2, 6, 4, 4))


@pytest.mark.parametrize("family", ["smplx", "smpl", "mano", "flame"])
def test_vertex_gradients_match_finite_differences_for_every_parameter(family):
    model = make_model(family, arrays=make_arrays(family, num_vertices=60), num_betas=4, num_expression_coeffs=3,
                       num_pca_comps=4)
    params = random_params(model, batch=2, seed=3)
    names = list(params)

    def f(*values):
        return model(**dict(zip(names, values))).vertices

    inputs = tuple(params[n].clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)
