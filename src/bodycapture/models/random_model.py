"""Random but valid SMPL-family models in the official file layout, for tests and speed benchmarks.

A real kinematic tree (the family's), rest joints spread along random bones, vertices clustered around
their joint, skinning weights shared between a joint and its parent (rows sum to 1), an affine joint
regressor, random shape / expression / pose-corrective directions, hand PCA bases that are orthonormal.
Nothing here comes from an official model.
"""

from __future__ import annotations

import numpy as np

from .families import get_family

__all__ = ["random_model_arrays"]


def random_model_arrays(
    family: str = "smplx",
    num_vertices: int = 300,
    num_shape: int = 10,
    num_expression: int = 10,
    num_faces: int | None = None,
    seed: int = 0,
    posedirs_scale: float = 1e-3,
) -> dict[str, np.ndarray]:
    """A dict of arrays with the keys, shapes and dtypes of an official `family` model file.

    For SMPL-X and FLAME, shapedirs holds `num_shape` shape columns then `num_expression` expression
    columns; with num_shape >= 300 this is the v1.1 layout (300 + expression), with num_shape == 10 the
    v1.0 layout. Every joint owns at least one vertex, so num_vertices >= number of joints.
    """
    fam = get_family(family)
    rng = np.random.default_rng(seed)
    parents = np.array(fam.parents)
    n_joints = len(parents)
    if num_vertices < n_joints:
        raise ValueError(f"need at least {n_joints} vertices for a {fam.display} model")

    joints = np.zeros((n_joints, 3))
    for j in range(1, n_joints):  # parents come before children in every family's order
        direction = rng.normal(size=3)
        joints[j] = joints[parents[j]] + direction / np.linalg.norm(direction) * rng.uniform(0.05, 0.2)

    owner = np.concatenate([np.arange(n_joints), rng.integers(0, n_joints, num_vertices - n_joints)])
    v_template = joints[owner] + rng.normal(scale=0.03, size=(num_vertices, 3))

    weights = np.zeros((num_vertices, n_joints))
    own = np.where(parents[owner] >= 0, rng.uniform(0.5, 1.0, num_vertices), 1.0)
    own[rng.random(num_vertices) < 0.3] = 1.0  # some vertices follow one joint only
    weights[np.arange(num_vertices), owner] = own
    has_parent = parents[owner] >= 0
    weights[np.arange(num_vertices)[has_parent], parents[owner][has_parent]] += 1.0 - own[has_parent]

    j_regressor = (owner[None, :] == np.arange(n_joints)[:, None]).astype(np.float64)
    j_regressor /= j_regressor.sum(1, keepdims=True)

    n_dirs = num_shape + (num_expression if fam.has_expression else 0)
    if num_faces is None:
        num_faces = 2 * num_vertices
    # Three distinct vertices per face: a first vertex and two different non-zero offsets from it.
    first = rng.integers(0, num_vertices, num_faces)
    off1 = rng.integers(1, num_vertices, num_faces)
    off2 = rng.integers(1, num_vertices - 1, num_faces)
    off2 = off2 + (off2 >= off1)
    faces = np.stack([first, first + off1, first + off2], 1) % num_vertices
    arrays = {
        "v_template": v_template,
        "f": faces.astype(np.uint32),
        "shapedirs": rng.normal(scale=0.01, size=(num_vertices, 3, n_dirs)),
        "posedirs": rng.normal(scale=posedirs_scale, size=(num_vertices, 3, 9 * (n_joints - 1))),
        "J_regressor": j_regressor,
        "weights": weights,
        "kintree_table": np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(n_joints)]).astype(np.int64),
        "J": joints,
    }
    for _, suffix in fam.hand_parts:
        basis, _ = np.linalg.qr(rng.normal(size=(45, 45)))
        arrays[f"hands_components{suffix}"] = basis
        arrays[f"hands_mean{suffix}"] = rng.normal(scale=0.1, size=45)
        arrays[f"hands_coeffs{suffix}"] = rng.normal(size=(20, 45))
    if fam.name == "smplx":
        arrays["lmk_faces_idx"] = rng.integers(0, num_faces, 51).astype(np.int64)
        bary = rng.random((51, 3))
        arrays["lmk_bary_coords"] = bary / bary.sum(1, keepdims=True)
    return arrays
