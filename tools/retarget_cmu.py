"""Retarget the CMU motion capture (BVH) to our model's SMPL-X body pose, and write the pose-prior dataset.

    python tools/retarget_cmu.py [--data ../shared/data/cmu-mocap] [--out build/cmu_poses.npz]

Method: transfer world-space rotations through the two rest poses. Both skeletons are y-up, face +z and
have the body's left at +x, and CMU's rest pose has our T-pose arms (its legs are abducted 20 degrees,
ours about 6: the rest alignment absorbs that). For every mapped bone we take the rotation A that turns
our rest bone direction into CMU's (shortest arc); then our joint's world rotation is G_ours = G_cmu A,
so each mapped bone of our posed model points exactly where CMU's does (the twist about the bone is
CMU's, up to the shortest-arc choice). Local rotations follow as R_j = G_parent^T G_j. Fingers, jaw and
eyes stay at rest (CMU did not capture them).

Rest calibration: CMU's skeleton and ours disagree on the resting shape of the upper spine, neck and
collar bones, so the transfer leaves near-constant local rotations there (measured on the training poses:
spine3 -0.36 rad with a spread of 0.08, neck -0.42, collars +-0.48, and the head +0.45 undoing the neck):
every CMU pose reaches our model hunched, with raised collars and the head thrown back. `retarget` removes
these offsets (REST_OFFSETS: spine3, neck, head and the collars: the joints whose mean is large and spread
small, and the head, whose alignment is the neck's), keeping every other bone's world orientation:
R_j <- O_parent(j) R_j O_j^T; the shoulders and arms still point where CMU's do. REST_OFFSETS are each
joint's mean (chordal) over the training poses, measured once with `--measure-offsets`; `--no-calibration`
builds the data without them.

Dataset: frames subsampled from 120 to 10 fps, near-duplicate poses dropped (every body joint within
`--min-change` degrees of the last kept pose), walking capped at a share of the data (the set is
walking-heavy), and split by subject (whole subjects held out for validation and test, as the paper held
out Human3.6M subjects). Writes body_pose (N, 63), global_orient (N, 3), subject, clip, split, and a
manifest (JSON) beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from bodycapture.io.bvh import read_bvh  # noqa: E402
from bodycapture.models.lbs import shortest_arc  # noqa: E402
from bodycapture.models.joint_names import SMPLX_JOINTS, SMPLX_PARENTS  # noqa: E402

# our joint -> (CMU joint whose world rotation it takes, our child joint, CMU bones from the joint to the
# child's counterpart); None: same rest alignment as its parent (a bone without a counterpart end)
MAPPING = {
    "pelvis": ("root", None, None),
    "spine1": ("lowerback", "spine2", ["upperback"]),
    "spine2": ("upperback", "spine3", ["thorax"]),
    "spine3": ("thorax", "neck", ["lowerneck"]),
    "neck": ("lowerneck", "head", ["upperneck", "head"]),
    "head": ("head", None, None),
}
for _side, _s in (("left", "l"), ("right", "r")):
    MAPPING.update({
        f"{_side}_hip": (f"{_s}femur", f"{_side}_knee", [f"{_s}tibia"]),
        f"{_side}_knee": (f"{_s}tibia", f"{_side}_ankle", [f"{_s}foot"]),
        f"{_side}_ankle": (f"{_s}foot", f"{_side}_foot", [f"{_s}toes"]),
        f"{_side}_foot": (f"{_s}toes", None, None),
        f"{_side}_collar": (f"{_s}clavicle", f"{_side}_shoulder", [f"{_s}humerus"]),
        f"{_side}_shoulder": (f"{_s}humerus", f"{_side}_elbow", [f"{_s}radius"]),
        f"{_side}_elbow": (f"{_s}radius", f"{_side}_wrist", [f"{_s}wrist", f"{_s}hand"]),
        f"{_side}_wrist": (f"{_s}hand", f"{_side}_middle1", [f"{_s}fingers"]),
    })
CMU_TO_METRES = 2.54 / 100 / 0.45
BODY = SMPLX_JOINTS[:22]


def rest_alignment(bvh, our_rest_joints: np.ndarray) -> dict[str, np.ndarray]:
    """Per mapped joint, A with G_ours = G_cmu A (see the module docstring)."""
    names = bvh.names
    align = {}
    for joint in BODY:  # parents first
        cmu, child, chain = MAPPING[joint]
        if child is None:
            parent = SMPLX_PARENTS[SMPLX_JOINTS.index(joint)]
            align[joint] = align[SMPLX_JOINTS[parent]] if parent >= 0 else np.eye(3)
            continue
        ours = our_rest_joints[SMPLX_JOINTS.index(child)] - our_rest_joints[SMPLX_JOINTS.index(joint)]
        theirs = sum(bvh.offsets[names.index(c)] for c in chain)
        align[joint] = shortest_arc(torch.as_tensor(ours), torch.as_tensor(theirs)).numpy()
    return align


# Measured by `python tools/retarget_cmu.py --measure-offsets` on the training subjects (axis-angle, radians;
# each measured after its parent's offset was removed, so the neck's includes what spine3's removal added).
REST_OFFSETS = {
    "spine3": [-0.3633, 0.0004, 0.0088],
    "neck": [-0.7817, -0.0021, -0.0446],
    "head": [-0.3297, -0.0350, 0.0402],
    "left_collar": [-0.1930, -0.0114, 0.4549],
    "right_collar": [-0.1937, 0.0283, -0.4723],
}


def retarget(bvh, our_rest_joints: np.ndarray, offsets: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(global_orient (F, 3), body_pose (F, 21, 3)) axis-angle for every frame of a CMU BVH clip, with the
    rest offsets removed (default REST_OFFSETS; {} keeps them)."""
    import torch

    from bodycapture.models.lbs import matrix_to_axis_angle

    world_cmu = bvh.world_rotations()  # (F, J, 3, 3)
    align = rest_alignment(bvh, our_rest_joints)
    frames = len(world_cmu)
    world = np.zeros((frames, 22, 3, 3))
    for j, joint in enumerate(BODY):
        world[:, j] = world_cmu[:, bvh.names.index(MAPPING[joint][0])] @ align[joint]
    local = np.empty_like(world)
    for j in range(22):
        p = SMPLX_PARENTS[j]
        local[:, j] = world[:, j] if p < 0 else np.swapaxes(world[:, p], -1, -2) @ world[:, j]
    aa = matrix_to_axis_angle(torch.as_tensor(local)).numpy()
    body = apply_rest_offsets(aa[:, 1:].reshape(frames, 63), REST_OFFSETS if offsets is None else offsets)
    return aa[:, 0], body.reshape(frames, 21, 3)


def _remove_offsets(body_pose: np.ndarray, joints: list[str], train: np.ndarray | None = None,
                    offsets: dict | None = None) -> tuple[np.ndarray, dict]:
    """R_j <- O_parent(j) R_j O_j^T over the body joints, parents first (O = identity for joints not in
    `joints`); O_j is given (`offsets`, axis-angle) or measured: the chordal mean of O_parent(j) R_j over the
    `train` rows, so that the calibrated joint's mean becomes the identity."""
    import torch

    from bodycapture.models.lbs import axis_angle_to_matrix, matrix_to_axis_angle

    R = axis_angle_to_matrix(torch.as_tensor(body_pose, dtype=torch.float64).reshape(-1, 21, 3))  # joints 1..21
    O = torch.eye(3, dtype=torch.float64).repeat(22, 1, 1)  # per SMPL-X body joint, root included
    for j in range(1, 22):  # parents before children
        R[:, j - 1] = O[SMPLX_PARENTS[j]] @ R[:, j - 1]
        if SMPLX_JOINTS[j] not in joints:
            continue
        if offsets is not None:
            O[j] = axis_angle_to_matrix(torch.as_tensor(offsets[SMPLX_JOINTS[j]], dtype=torch.float64)[None])[0]
        else:
            u, _, vt = torch.linalg.svd(R[torch.as_tensor(train), j - 1].mean(0))  # chordal mean, in SO(3)
            O[j] = u @ torch.diag(torch.tensor([1.0, 1.0, float(torch.linalg.det(u @ vt))], dtype=torch.float64)) @ vt
        R[:, j - 1] = R[:, j - 1] @ O[j].T
    aa = matrix_to_axis_angle(R).reshape(len(body_pose), 63).numpy()
    used = {SMPLX_JOINTS[j]: matrix_to_axis_angle(O[j][None])[0].tolist() for j in range(22) if SMPLX_JOINTS[j] in joints}
    return aa.astype(body_pose.dtype), used


def apply_rest_offsets(body_pose: np.ndarray, offsets: dict) -> np.ndarray:
    """Remove the given rest offsets {joint: axis-angle} from body_pose (N, 63) (see the module docstring)."""
    return _remove_offsets(body_pose, list(offsets), offsets=offsets)[0] if offsets else body_pose


def calibrate_rest(body_pose: np.ndarray, train: np.ndarray, joints: list[str]) -> tuple[np.ndarray, dict]:
    """Measure and remove the mean local rotation of each joint in `joints` over the `train` rows of
    body_pose (N, 63), keeping the world orientation of every other bone. Returns the new body_pose and the
    offsets {joint: axis-angle}, as REST_OFFSETS holds them."""
    return _remove_offsets(body_pose, joints, train=train)


def bone_direction_error(bvh, global_orient, body_pose, model) -> np.ndarray:
    """Angle (degrees) between each mapped bone of our posed model and CMU's, (F, bones)."""
    import torch

    with torch.no_grad():
        out = model(global_orient=torch.as_tensor(global_orient), body_pose=torch.as_tensor(body_pose.reshape(len(body_pose), -1)))
    ours = out.joints.double().numpy()
    theirs = bvh.positions()
    names = bvh.names
    errs = []
    for joint in BODY:
        cmu, child, chain = MAPPING[joint]
        if child is None:
            continue
        a = ours[:, SMPLX_JOINTS.index(child)] - ours[:, SMPLX_JOINTS.index(joint)]
        start = theirs[:, names.index(cmu)]
        end = theirs[:, names.index(chain[-1])]
        b = end - start
        cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        errs.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    return np.stack(errs, 1)


def main(argv=None) -> int:
    import torch

    import bodycapture

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "cmu-mocap")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "cmu_poses.npz")
    parser.add_argument("--step", type=int, default=12, help="keep every STEP-th frame (120 fps -> 10 fps)")
    parser.add_argument("--min-change", type=float, default=5.0, help="degrees: drop near-duplicate poses")
    parser.add_argument("--walk-share", type=float, default=0.25, help="cap of walking poses in the data")
    parser.add_argument("--val-subjects", default="6,13", help="held out for model selection (about 12 %%)")
    parser.add_argument("--test-subjects", default="16,35", help="held out for testing (about 13 %%)")
    parser.add_argument("--test-clips", type=Path, default=ROOT / "src" / "bodycapture" / "data" / "mocap_test_clips.npz",
                        help="package data: whole clips of the test subjects at 30 fps, for the video suite")
    parser.add_argument("--no-calibration", action="store_true", help="keep the rest offsets (see the docstring)")
    parser.add_argument("--measure-offsets", action="store_true",
                        help="measure REST_OFFSETS on the training poses (uncalibrated), print them and stop")
    parser.add_argument("--test-poses", type=Path, default=ROOT / "src" / "bodycapture" / "data" / "mocap_test_poses.npz",
                        help="package data: the test subjects' body poses, for `bodycapture eval --suite mocap`")
    args = parser.parse_args(argv)

    model = bodycapture.load_model(dtype=torch.float64)
    rest = model().joints[0].numpy()
    rows = list(csv.DictReader(open(args.data / "index.csv")))
    rows = [r for r in rows if r["subset"] == "asfamc-direct"]
    val = set(args.val_subjects.split(","))
    test = set(args.test_subjects.split(","))
    rng = np.random.default_rng(0)
    kept, errors = [], []
    for r in rows:
        bvh = read_bvh(args.data / r["file"])
        bvh.motion = bvh.motion[:: args.step]
        orient, pose = retarget(bvh, rest, {})  # offsets removed below, after near-duplicates are dropped
        if len(errors) < 40:  # bone-direction check on a sample of clips
            errors.append(bone_direction_error(bvh, orient, pose, model).mean())
        last = None
        rot = pose.reshape(len(pose), 21, 3)
        for f in range(len(pose)):
            if last is not None and np.degrees(np.linalg.norm(rot[f] - rot[last], axis=-1)).max() < args.min_change:
                continue
            last = f
            split = "test" if r["subject"] in test else "val" if r["subject"] in val else "train"
            kept.append((orient[f], pose[f].reshape(-1), r["subject"], r["clip"], r["category"].strip(), split))
    categories = np.array([k[4] for k in kept])
    walk = np.nonzero(categories == "walk")[0]
    cap = int(args.walk_share / (1 - args.walk_share) * (len(kept) - len(walk)))  # walking = share of the result
    if len(walk) > cap:
        drop = set(rng.choice(walk, len(walk) - cap, replace=False).tolist())
        kept = [k for i, k in enumerate(kept) if i not in drop]
    body_pose = np.stack([k[1] for k in kept])
    if args.measure_offsets:
        _, measured = calibrate_rest(body_pose, np.array([k[5] == "train" for k in kept]), list(REST_OFFSETS))
        print(json.dumps({j: [round(x, 4) for x in v] for j, v in measured.items()}, indent=1))
        return 0
    if not args.no_calibration:
        body_pose = apply_rest_offsets(body_pose, REST_OFFSETS)
    arrays = {
        "global_orient": np.stack([k[0] for k in kept]).astype(np.float32),
        "body_pose": body_pose.astype(np.float32),
        "subject": np.array([k[2] for k in kept]),
        "clip": np.array([k[3] for k in kept]),
        "category": np.array([k[4] for k in kept]),
        "split": np.array([k[5] for k in kept]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    manifest = {
        "source": str(args.data), "clips": len(rows), "poses": len(kept),
        "per_split": {s: int((arrays["split"] == s).sum()) for s in ("train", "val", "test")},
        "val_subjects": sorted(val), "test_subjects": sorted(test),
        "step": args.step, "min_change_deg": args.min_change, "walk_share": args.walk_share,
        "bone_direction_error_deg_mean": float(np.mean(errors)),
        "rest_offsets_removed": {} if args.no_calibration else REST_OFFSETS,
        "categories": {c: int((arrays["category"] == c).sum()) for c in sorted(set(arrays["category"]))},
    }
    args.out.with_suffix(".json").write_text(json.dumps(manifest, indent=1))
    write_test_poses(arrays, args.test_poses)
    write_test_clips(args.data, rest, args.test_clips, {} if args.no_calibration else REST_OFFSETS)
    print(json.dumps({k: v for k, v in manifest.items() if k != "categories"}, indent=1))
    return 0


def write_test_poses(arrays: dict, path: Path) -> None:
    """The held-out test subjects' body poses (N, 63) as package data (CMU's terms allow shipping the data in a
    product; see ../shared/data/cmu-mocap/README.md): the motion-capture suite of `bodycapture eval`."""
    test = arrays["split"] == "test"
    np.savez_compressed(path, body_pose=arrays["body_pose"][test].astype(np.float32),
                        subject=arrays["subject"][test], clip=arrays["clip"][test],
                        source=np.array("CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), test subjects, "
                                        "retargeted by tools/retarget_cmu.py"))


# Whole clips of the held-out test subjects for the synthetic video suite (evaluation/video.py): walking
# with turns, running with a sudden stop, jumping, at 30 fps.
TEST_CLIPS = ["16_11", "16_17", "16_08", "16_02", "35_01", "35_18"]


def write_test_clips(data: Path, our_rest_joints: np.ndarray, path: Path, offsets: dict, step: int = 4) -> None:
    """The TEST_CLIPS, every `step`-th frame (120 -> 30 fps), as package data: global_orient (N, 3),
    body_pose (N, 63) (rest offsets removed as for the poses), root_position (N, 3) metres in CMU's world
    (y up), clip (N,) and fps."""
    rows = {r["clip"]: r for r in csv.DictReader(open(data / "index.csv"))}
    parts = {"global_orient": [], "body_pose": [], "root_position": [], "clip": []}
    for clip in TEST_CLIPS:
        bvh = read_bvh(data / rows[clip]["file"])
        bvh.motion = bvh.motion[::step]
        orient, pose = retarget(bvh, our_rest_joints, offsets)
        parts["global_orient"].append(orient)
        parts["body_pose"].append(pose.reshape(len(pose), 63))
        parts["root_position"].append(bvh.positions()[:, 0] * CMU_TO_METRES)
        parts["clip"].append(np.full(len(pose), clip))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    np.savez_compressed(path, **{k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()},
                        fps=np.array(120.0 / step),
                        source=np.array("CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), test subjects "
                                        "16 and 35, retargeted by tools/retarget_cmu.py"))


if __name__ == "__main__":
    sys.exit(main())
