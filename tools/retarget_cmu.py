"""Retarget the CMU motion capture (BVH) to our model's SMPL-X body pose, and write the pose-prior dataset.

    python tools/retarget_cmu.py [--data ../shared/data/cmu-mocap] [--out build/cmu_poses.npz]

Method: transfer world-space rotations through the two rest poses. Both skeletons are y-up, face +z and
have the body's left at +x, and CMU's rest pose has our T-pose arms (its legs are abducted 20 degrees,
ours about 6: the rest alignment absorbs that). For every mapped bone we take the rotation A that turns
our rest bone direction into CMU's (shortest arc); then our joint's world rotation is G_ours = G_cmu A,
so each mapped bone of our posed model points exactly where CMU's does (the twist about the bone is
CMU's, up to the shortest-arc choice). Local rotations follow as R_j = G_parent^T G_j. Fingers, jaw and
eyes stay at rest (CMU did not capture them).

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


def retarget(bvh, our_rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(global_orient (F, 3), body_pose (F, 21, 3)) axis-angle for every frame of a CMU BVH clip."""
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
    return aa[:, 0], aa[:, 1:]


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
        orient, pose = retarget(bvh, rest)
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
    arrays = {
        "global_orient": np.stack([k[0] for k in kept]).astype(np.float32),
        "body_pose": np.stack([k[1] for k in kept]).astype(np.float32),
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
        "categories": {c: int((arrays["category"] == c).sum()) for c in sorted(set(arrays["category"]))},
    }
    args.out.with_suffix(".json").write_text(json.dumps(manifest, indent=1))
    write_test_poses(arrays, args.test_poses)
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


if __name__ == "__main__":
    sys.exit(main())
