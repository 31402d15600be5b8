"""Animation files of a track: the AMASS-style npz re-poses the model to the fitted meshes (in the viewer
frame), and the BVH's skeleton, read back with our reader, reproduces the model's joints at every frame."""

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.io.animation import matrix_to_euler, track_motion, write_amass_npz, write_bvh
from bodycapture.io.bvh import euler_to_matrix, read_bvh
from bodycapture.io.results import to_viewer_frame

SMPLX_NAMES = ("betas", "expression", "global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose",
               "leye_pose", "reye_pose", "transl")


@pytest.fixture(scope="module")
def track():
    model = bodycapture.load_model(dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    T = 6
    sizes = model.parameter_sizes()
    params = {k: 0.3 * torch.randn(T, n, generator=g, dtype=torch.float64) for k, n in sizes.items()
              if k not in ("betas", "transl", "global_orient")}
    params["betas"] = torch.randn(1, model.num_betas, generator=g, dtype=torch.float64).expand(T, -1)
    params["global_orient"] = torch.tensor([[np.pi, 0.0, 0.0]], dtype=torch.float64) + 0.2 * torch.randn(T, 3, generator=g, dtype=torch.float64)
    params["transl"] = torch.tensor([[0.1, 0.3, 3.5]], dtype=torch.float64) + 0.05 * torch.randn(T, 3, generator=g, dtype=torch.float64)
    return model, {k: v.numpy() for k, v in params.items()}


def test_amass_npz_re_poses_the_fitted_meshes(track, tmp_path):
    model, params = track
    path = write_amass_npz(tmp_path / "track_000.npz", model, params, fps=25.0, gender="neutral")
    z = np.load(path)
    T = len(params["body_pose"])
    assert z["poses"].shape == (T, 165) and z["trans"].shape == (T, 3) and z["betas"].shape == (model.num_betas,)
    assert str(z["gender"]) == "neutral" and float(z["mocap_framerate"]) == 25.0 and str(z["surface_model_type"]) == "smplx"
    np.testing.assert_array_equal(z["root_orient"], z["poses"][:, :3])
    np.testing.assert_array_equal(z["pose_body"], z["poses"][:, 3:66])
    with torch.no_grad():
        expected = to_viewer_frame(model(**{k: torch.as_tensor(v) for k, v in params.items()}).vertices.numpy())
        named = {k: torch.as_tensor(z[k], dtype=torch.float64) for k in SMPLX_NAMES if k in z.files}
        named["betas"] = named["betas"][None]  # AMASS's (num_betas,)
        again = model(**named).vertices.numpy()
        # AMASS's own keys re-pose it too: root_orient + pose_body + hands + jaw + eyes, trans, betas
        amass = model(betas=torch.as_tensor(z["betas"], dtype=torch.float64)[None],
                      expression=torch.as_tensor(z["expression"], dtype=torch.float64),
                      global_orient=torch.as_tensor(z["root_orient"], dtype=torch.float64),
                      body_pose=torch.as_tensor(z["pose_body"], dtype=torch.float64),
                      jaw_pose=torch.as_tensor(z["pose_jaw"], dtype=torch.float64),
                      leye_pose=torch.as_tensor(z["pose_eye"][:, :3], dtype=torch.float64),
                      reye_pose=torch.as_tensor(z["pose_eye"][:, 3:], dtype=torch.float64),
                      left_hand_pose=torch.as_tensor(z["pose_hand"][:, :45], dtype=torch.float64),
                      right_hand_pose=torch.as_tensor(z["pose_hand"][:, 45:], dtype=torch.float64),
                      transl=torch.as_tensor(z["trans"], dtype=torch.float64)).vertices.numpy()
    np.testing.assert_allclose(again, expected, atol=2e-5)  # float32 in the file
    np.testing.assert_allclose(amass, expected, atol=2e-5)
    assert (expected[..., 2] < 0).all()  # in front of the camera, which looks along -z


def test_bvh_skeleton_reproduces_the_joints(track, tmp_path):
    model, params = track
    path = write_bvh(tmp_path / "track_000.bvh", model, params, fps=25.0)
    bvh = read_bvh(path)
    motion = track_motion(model, params, 25.0)
    assert bvh.names == [bvh.names[0]] + bvh.names[1:] and len(bvh.names) == model.num_joints
    assert len(bvh.motion) == len(params["body_pose"]) and bvh.frame_time == pytest.approx(1 / 25.0)
    positions = bvh.positions() / 100.0  # centimetres in the file
    order = [model.joint_names.index(n) for n in bvh.names]
    np.testing.assert_allclose(positions, motion.joints[:, order], atol=1e-5)
    with torch.no_grad():
        joints = model(**{k: torch.as_tensor(v) for k, v in params.items()}).joints.numpy()
    np.testing.assert_allclose(motion.joints, to_viewer_frame(joints), atol=1e-9)


def test_matrix_to_euler_inverts_the_bvh_convention():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-170, 170, size=(200, 3))
    angles[:, 1] = rng.uniform(-89, 89, size=200)  # Y within the unique range
    R = euler_to_matrix(np.radians(angles), "zyx")
    np.testing.assert_allclose(matrix_to_euler(R), angles, atol=1e-8)
    lock = euler_to_matrix(np.radians([[30.0, 90.0, 20.0]]), "zyx")  # gimbal lock: same matrix back
    np.testing.assert_allclose(euler_to_matrix(np.radians(matrix_to_euler(lock)), "zyx"), lock, atol=1e-9)


def _accessor(gltf, index: int) -> np.ndarray:
    """An accessor's data from a loaded .glb (pygltflib), as a numpy array (count, components)."""
    import pygltflib as g

    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {g.FLOAT: np.float32, g.UNSIGNED_SHORT: np.uint16, g.UNSIGNED_INT: np.uint32}[acc.componentType]
    width = {g.SCALAR: 1, g.VEC3: 3, g.VEC4: 4, g.MAT4: 16}[acc.type]
    blob = gltf.binary_blob()
    start = view.byteOffset + (acc.byteOffset or 0)
    return np.frombuffer(blob, dtype=dtype, count=acc.count * width, offset=start).reshape(acc.count, width)


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_gltf_skeleton_and_skin_reproduce_the_model(track, tmp_path):
    import pygltflib as g

    from bodycapture.io.animation import write_gltf

    model, params = track
    fps, T = 25.0, len(params["body_pose"])
    path = write_gltf(tmp_path / "track_000.glb", model, params, fps)
    gltf = g.GLTF2().load(str(path))  # reloads with the library that wrote it
    assert len(gltf.skins) == 1 and len(gltf.skins[0].joints) == model.num_joints
    assert len(gltf.animations) == 1
    times = _accessor(gltf, gltf.animations[0].samplers[0].input)[:, 0]
    assert len(times) == T and times[-1] == pytest.approx((T - 1) / fps)  # frames and duration of the clip
    motion = track_motion(model, params, fps)
    J = model.num_joints
    rotation = {c.target.node: _accessor(gltf, gltf.animations[0].samplers[c.sampler].output)
                for c in gltf.animations[0].channels if c.target.path == "rotation"}
    root_track = [c for c in gltf.animations[0].channels if c.target.path == "translation"][0]
    root_position = _accessor(gltf, gltf.animations[0].samplers[root_track.sampler].output)
    parent = {c: j for j, node in enumerate(gltf.nodes[:J]) for c in (node.children or [])}
    with torch.no_grad():
        vertices = to_viewer_frame(model(**{k: torch.as_tensor(v) for k, v in params.items()}).vertices.numpy())
    primitive = gltf.meshes[0].primitives[0]
    rest = _accessor(gltf, primitive.attributes.POSITION).astype(np.float64)
    influences = [(_accessor(gltf, getattr(primitive.attributes, f"JOINTS_{s}")).astype(int),
                   _accessor(gltf, getattr(primitive.attributes, f"WEIGHTS_{s}")).astype(np.float64))
                  for s in range(2) if getattr(primitive.attributes, f"JOINTS_{s}") is not None]
    ibm = _accessor(gltf, gltf.skins[0].inverseBindMatrices).reshape(J, 4, 4).transpose(0, 2, 1)
    targets = [_accessor(gltf, target["POSITION"]).astype(np.float64) for target in primitive.targets]
    weights_track = [c for c in gltf.animations[0].channels if c.target.path == "weights"][0]
    expression = _accessor(gltf, gltf.animations[0].samplers[weights_track.sampler].output).reshape(T, len(targets))
    assert len(targets) == model.num_expression
    for t in (0, T - 1):  # posing the skeleton at frame t: forward kinematics over the nodes
        world = np.zeros((J, 4, 4))
        for j in range(J):  # parents come first in the model's joint order
            local = np.eye(4)
            local[:3, :3] = _quat_to_matrix(rotation[j][t].astype(np.float64))
            local[:3, 3] = root_position[t] if j == 0 else gltf.nodes[j].translation
            world[j] = local if j == 0 else world[parent[j]] @ local
        np.testing.assert_allclose(world[:, :3, 3], motion.joints[t], atol=2e-5)  # our joints at frame t
        morphed = rest + sum(w * target for w, target in zip(expression[t], targets))  # morph targets first
        skinning = world @ ibm  # (J, 4, 4): glTF's joint matrices
        posed = np.zeros_like(rest)
        for joints, weights in influences:  # then linear blend skinning over all weight sets
            blended = np.einsum("vk,vkrc->vrc", weights, skinning[joints][..., :3, :])  # (V, 3, 4)
            posed += np.einsum("vrc,vc->vr", blended[..., :3], morphed) + blended[..., 3]
        np.testing.assert_allclose(posed, vertices[t], atol=1e-4)  # the skinned mesh is the model's at frame t
