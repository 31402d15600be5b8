"""Animation files of one track (a person over the frames of a clip): an AMASS-style `.npz`, a BVH, and a
skinned, animated glTF binary (`.glb`, written with pygltflib) that opens in Blender, three.js and game
engines.

Both are in the viewer frame of our meshes (camera space turned 180 degrees about x: y up, the camera at the
origin looking along -z), so an animation lines up with the clip's meshes. The input is what the fitter
gives per frame: SMPL-X-named parameters (T, n) in camera space (`transl` is the camera translation).

The root of the SMPL family turns about the pelvis joint, not the origin, so turning the whole body by D
(the 180 degree turn) gives root_orient' = D R and trans' = D (J0 + t) - J0, where J0 is the shaped body's
rest pelvis: re-posing the model from the file gives the turned vertices exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .results import VIEWER_TURN, to_viewer_frame

__all__ = ["Motion", "track_motion", "write_amass_npz", "write_bvh", "write_gltf", "matrix_to_euler", "skin_influences",
           "MAX_INFLUENCES"]

BVH_SCALE = 100.0  # BVH offsets and positions in centimetres, as CMU's and most tools' files


@dataclass
class Motion:
    """A track's motion in the viewer frame. params: SMPL-X-named arrays (T, n) with global_orient and
    transl turned (re-posing the model from them gives the turned meshes); full_pose (T, J, 3) axis-angle of
    every joint (hand means included); rotations (T, J, 3, 3) local; rest_joints (J, 3) of the shaped body;
    joints (T, J, 3) posed; parents (J,); names (J,); fps."""

    params: dict[str, np.ndarray]
    rest_vertices: np.ndarray  # (V, 3) the shaped body at rest (the first frame's betas, no expression)
    expression: np.ndarray | None  # (T, E) per frame, or None for models without expressions
    full_pose: np.ndarray
    rotations: np.ndarray
    rest_joints: np.ndarray
    joints: np.ndarray
    parents: np.ndarray
    names: list[str]
    fps: float


def track_motion(model, params: dict, fps: float) -> Motion:
    """Pose `model` with a track's per-frame parameters (camera space, (T, n) or (1, n) each; the shape is
    the first frame's) and turn everything into the viewer frame."""
    import torch

    from ..models.lbs import blend_shapes, matrix_to_axis_angle

    dtype, device = model.v_template.dtype, model.v_template.device
    # a copy: arrays may be read-only (Ray's object store), which torch warns about
    given = {k: torch.tensor(np.asarray(v), dtype=dtype, device=device) for k, v in params.items()}
    with torch.no_grad():
        # joints and rotations only: a one-vertex model, so that memory does not grow with T x V (a
        # minute of video posed whole was about 0.3 GB of vertices and more of skinning intermediates)
        out = model.vertex_subset([0])(**given)
        T = out.rot_mats.shape[0]
        coeffs = out.betas if out.expression is None else torch.cat([out.betas, out.expression], 1)
        rest = (model.joint_template + blend_shapes(coeffs[:1], model.joint_shapedirs)[0]).double().cpu().numpy()
        shape_only = coeffs[:1].clone()
        shape_only[:, model.num_betas :] = 0  # expressions: per frame (morph targets in the glTF)
        rest_vertices = (model.v_template + blend_shapes(shape_only, model.shapedirs)[0]).double().cpu().numpy()
        expression = None if out.expression is None else out.expression.expand(T, -1).double().cpu().numpy()
        turn = torch.as_tensor(VIEWER_TURN, dtype=dtype, device=device)
        root = turn @ out.rot_mats[:, 0]
        rotations = out.rot_mats.clone()
        rotations[:, 0] = root
        transl = out.transl.expand(T, 3).double().cpu().numpy()
        joints = to_viewer_frame(out.joints.double().cpu().numpy())
        full_pose = out.full_pose.reshape(T, -1, 3).clone()
        full_pose[:, 0] = matrix_to_axis_angle(root)
    turned = {k: np.asarray(v).copy() for k, v in params.items()}
    turned["global_orient"] = full_pose[:, 0].double().cpu().numpy()
    turned["transl"] = to_viewer_frame(rest[0] + transl) - rest[0]
    for k, v in turned.items():
        if v.shape[0] == 1 and T > 1 and k not in ("betas",):
            turned[k] = np.repeat(v, T, 0)
    return Motion(turned, rest_vertices, expression, full_pose.double().cpu().numpy(),
                  rotations.double().cpu().numpy(), rest, joints, model.parents.cpu().numpy(),
                  list(model.joint_names), float(fps))


def write_amass_npz(path: str | Path, model, params: dict, fps: float, gender: str = "neutral",
                    motion: Motion | None = None) -> Path:
    """An AMASS-style npz of one track, written atomically: `poses` (T, 3 J) axis-angle of every joint,
    `trans` (T, 3), `betas`, `gender`, `mocap_framerate`, for SMPL-X also AMASS's `root_orient`, `pose_body`,
    `pose_hand`, `pose_jaw`, `pose_eye` and `surface_model_type`; plus our SMPL-X-named arrays
    (`global_orient`, `body_pose`, ..., `transl`, each (T, n); `betas[None]`) that re-pose `model` directly.
    Viewer frame (module doc)."""
    motion = motion or track_motion(model, params, fps)
    T = motion.full_pose.shape[0]
    poses = motion.full_pose.reshape(T, -1).astype(np.float32)
    arrays = {"poses": poses, "trans": motion.params["transl"].astype(np.float32),
              "betas": np.asarray(motion.params.get("betas", np.zeros((1, model.num_betas))))[0].astype(np.float32),
              "gender": np.array(gender), "mocap_framerate": np.array(float(fps)),
              "num_betas": np.array(model.num_betas), "frame": "viewer: y up, camera at the origin looking along -z"}
    if model.family.name == "smplx":
        arrays.update(root_orient=poses[:, :3], pose_body=poses[:, 3:66], pose_jaw=poses[:, 66:69],
                      pose_eye=poses[:, 69:75], pose_hand=poses[:, 75:165], surface_model_type=np.array("smplx"))
    for k, v in motion.params.items():
        if k != "betas":  # AMASS's betas, (num_betas,), serve both
            arrays[k] = np.asarray(v, dtype=np.float32)
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


MAX_INFLUENCES = 8  # skinning weights kept per vertex in an animation (the open model has at most 7, SMPL-X 4)


def skin_influences(weights: np.ndarray, k: int = MAX_INFLUENCES) -> tuple[np.ndarray, np.ndarray]:
    """(V, J) skinning weights -> the K largest per vertex: joint indices (V, K) uint8 and weights (V, K)
    uint16 (of 65535), renormalised; K = the most non-zero weights any vertex has, at most `k`."""
    weights = np.asarray(weights, dtype=np.float64)
    k = int(min(k, max(1, (weights > 1e-6).sum(1).max())))
    joints = np.argsort(-weights, axis=1)[:, :k]
    kept = np.take_along_axis(weights, joints, 1)
    kept = kept / kept.sum(1, keepdims=True)
    return joints.astype(np.uint8), np.round(kept * 65535).astype(np.uint16)


def matrix_to_euler(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) intrinsic Z, Y, X angles in degrees (R = Rz Ry Rx), the
    order of the BVH channels written here."""
    R = np.asarray(R, dtype=np.float64)
    sy = np.clip(-R[..., 2, 0], -1.0, 1.0)
    y = np.arcsin(sy)
    z = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    x = np.arctan2(R[..., 2, 1], R[..., 2, 2])
    locked = np.abs(sy) > 1 - 1e-9  # gimbal lock: put all of the rest in z
    z = np.where(locked, np.arctan2(-R[..., 0, 1], R[..., 1, 1]), z)
    x = np.where(locked, 0.0, x)
    return np.degrees(np.stack([z, y, x], -1))


def write_bvh(path: str | Path, model, params: dict, fps: float, motion: Motion | None = None) -> Path:
    """A BVH of one track, written atomically: the model's skeleton (joint names, rest offsets of the track's
    shape, in centimetres), the root's position and every joint's rotation per frame (Z, Y, X channels).
    Viewer frame (module doc); opens in Blender and other BVH readers."""
    motion = motion or track_motion(model, params, fps)
    J = len(motion.names)
    children = [[c for c in range(J) if motion.parents[c] == j] for j in range(J)]
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        offset = motion.rest_joints[j] - (motion.rest_joints[motion.parents[j]] if motion.parents[j] >= 0 else 0)
        head = "ROOT" if motion.parents[j] < 0 else "JOINT"
        lines.append(f"{pad}{head} {motion.names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {' '.join(f'{x * BVH_SCALE:.6f}' for x in offset)}")
        channels = "6 Xposition Yposition Zposition" if motion.parents[j] < 0 else "3"
        lines.append(f"{pad}  CHANNELS {channels} Zrotation Yrotation Xrotation")
        for c in children[j]:
            joint(c, depth + 1)
        if not children[j]:
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET 0.000000 0.000000 0.000000")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    T = motion.rotations.shape[0]
    euler = matrix_to_euler(motion.rotations)  # (T, J, 3)
    order = []  # joints in the order the hierarchy lists them (depth first)

    def visit(j: int) -> None:
        order.append(j)
        for c in children[j]:
            visit(c)

    visit(0)
    root_position = motion.joints[:, 0] * BVH_SCALE  # (T, 3)
    values = np.concatenate([root_position, euler[:, order].reshape(T, -1)], 1)
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def _quaternions(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions x, y, z, w (glTF's order), w >= 0."""
    import torch

    from ..models.lbs import matrix_to_axis_angle

    aa = matrix_to_axis_angle(torch.as_tensor(R, dtype=torch.float64)).numpy()
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = np.where(angle > 1e-12, aa / np.maximum(angle, 1e-12), 0.0)
    return np.concatenate([axis * np.sin(angle / 2), np.cos(angle / 2)], -1)


def write_gltf(path: str | Path, model, params: dict, fps: float, motion: Motion | None = None) -> Path:
    """A skinned, animated glTF binary (.glb) of one track, written atomically with pygltflib: a node per
    model joint (rest offsets of the track's shape as translations), the shaped body at rest as the skinned
    mesh (all of the model's skinning weights: JOINTS_0/WEIGHTS_0 and, past four per vertex, JOINTS_1/
    WEIGHTS_1), the expression blend shapes as morph targets, and one animation: every joint's rotation, the
    root's translation and the expression weights per frame. Viewer frame (module doc). Not in it: pose
    correctives (official SMPL-X files; glTF skinning is linear) and the joints' shift with expression."""
    import pygltflib as g

    from .raster import vertex_normals

    motion = motion or track_motion(model, params, fps)
    J, T = len(motion.names), motion.rotations.shape[0]
    faces = np.asarray(model.faces, dtype=np.uint32)
    positions = motion.rest_vertices.astype(np.float32)
    normals = vertex_normals(motion.rest_vertices, faces).astype(np.float32)
    skin_joints, skin_weights = skin_influences(model.lbs_weights.cpu().numpy())
    K = skin_joints.shape[1]
    sets = (K + 3) // 4
    joints4 = np.zeros((len(positions), 4 * sets), np.uint16)
    weights4 = np.zeros((len(positions), 4 * sets), np.float32)
    joints4[:, :K], weights4[:, :K] = skin_joints, skin_weights / 65535.0
    weights4 /= weights4.sum(1, keepdims=True)
    offsets = motion.rest_joints - np.where(motion.parents[:, None] >= 0, motion.rest_joints[np.maximum(motion.parents, 0)], 0.0)
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (J, 1, 1))
    inverse_bind[:, :3, 3] = -motion.rest_joints  # bind pose: rest joints, no rotation
    times = (np.arange(T) / fps).astype(np.float32)
    rotations = _quaternions(motion.rotations).astype(np.float32)  # (T, J, 4)
    root_translation = motion.joints[:, 0].astype(np.float32)  # (T, 3)

    blob, views, accessors = bytearray(), [], []

    def add(array: np.ndarray, kind: str, component: int, target: int | None = None, bounds: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        flat = np.asarray(array).reshape(len(array), -1)
        accessor = g.Accessor(bufferView=len(views) - 1, componentType=component, count=len(array), type=kind)
        if bounds:
            accessor.min, accessor.max = flat.min(0).tolist(), flat.max(0).tolist()
        accessors.append(accessor)
        return len(accessors) - 1

    attributes = g.Attributes(POSITION=add(positions, g.VEC3, g.FLOAT, g.ARRAY_BUFFER, True),
                              NORMAL=add(normals, g.VEC3, g.FLOAT, g.ARRAY_BUFFER))
    for s in range(sets):
        setattr(attributes, f"JOINTS_{s}", add(joints4[:, 4 * s : 4 * s + 4], g.VEC4, g.UNSIGNED_SHORT, g.ARRAY_BUFFER))
        setattr(attributes, f"WEIGHTS_{s}", add(weights4[:, 4 * s : 4 * s + 4], g.VEC4, g.FLOAT, g.ARRAY_BUFFER))
    indices = add(faces.reshape(-1), g.SCALAR, g.UNSIGNED_INT, g.ELEMENT_ARRAY_BUFFER)
    targets = []
    if motion.expression is not None and motion.expression.shape[1]:  # expression blend shapes: morph targets
        dirs = model.shapedirs[:, :, model.num_betas :].double().cpu().numpy()  # (V, 3, E)
        targets = [{"POSITION": add(dirs[:, :, e].astype(np.float32), g.VEC3, g.FLOAT, g.ARRAY_BUFFER, True)}
                   for e in range(dirs.shape[2])]
    ibm = add(inverse_bind.transpose(0, 2, 1).reshape(J, 16), g.MAT4, g.FLOAT)  # glTF matrices are column-major
    time_input = add(times, g.SCALAR, g.FLOAT, bounds=True)

    children = [[c for c in range(J) if motion.parents[c] == j] for j in range(J)]
    nodes = [g.Node(name=motion.names[j], translation=offsets[j].tolist(), children=children[j] or None)
             for j in range(J)]
    nodes[0].translation = root_translation[0].tolist()
    nodes.append(g.Node(name="body", mesh=0, skin=0))
    samplers, channels = [], []
    for j in range(J):
        samplers.append(g.AnimationSampler(input=time_input, output=add(rotations[:, j], g.VEC4, g.FLOAT), interpolation="LINEAR"))
        channels.append(g.AnimationChannel(sampler=len(samplers) - 1, target=g.AnimationChannelTarget(node=j, path="rotation")))
    samplers.append(g.AnimationSampler(input=time_input, output=add(root_translation, g.VEC3, g.FLOAT), interpolation="LINEAR"))
    channels.append(g.AnimationChannel(sampler=len(samplers) - 1, target=g.AnimationChannelTarget(node=0, path="translation")))
    if targets:  # the weights of every morph target, frame after frame
        weights = motion.expression.astype(np.float32).reshape(-1, 1)  # (T * E, 1)
        samplers.append(g.AnimationSampler(input=time_input, output=add(weights, g.SCALAR, g.FLOAT), interpolation="LINEAR"))
        channels.append(g.AnimationChannel(sampler=len(samplers) - 1, target=g.AnimationChannelTarget(node=J, path="weights")))

    gltf = g.GLTF2(
        asset=g.Asset(generator="bodycapture", version="2.0"),
        scene=0, scenes=[g.Scene(nodes=[0, J])], nodes=nodes,
        meshes=[g.Mesh(name="body", primitives=[g.Primitive(attributes=attributes, indices=indices, targets=targets or None)],
                       weights=[0.0] * len(targets) if targets else None)],
        skins=[g.Skin(joints=list(range(J)), skeleton=0, inverseBindMatrices=ibm)],
        animations=[g.Animation(name="track", samplers=samplers, channels=channels)],
        accessors=accessors, bufferViews=views, buffers=[g.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(bytes(blob))
    path = Path(path)
    with atomic_path(path) as tmp:
        gltf.save_binary(str(tmp))
    return path
