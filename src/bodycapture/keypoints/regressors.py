"""From body-model output to our 135-point keypoint layout (layout.py), for every model family.

A keypoint comes from one of three sources:
- a model joint, picked by index (shoulders, elbows, knees, finger joints, ...; MidHip is the pelvis);
- a vertex (nose, eyes, ears, toes, heels, fingertips): the published SMPL-X / SMPL vertex ids for the
  official meshes (Pavlakos et al. 2019, `smplx` documentation), and the ids stored in the file for our
  open model, whose mesh is different;
- a face landmark, interpolated on a triangle with barycentric coordinates (`lmk_faces_idx`,
  `lmk_bary_coords` in the file). The jaw-line contour is static for the open model and, for official
  SMPL-X files, dynamic: its triangles are looked up by the head's yaw (the file's 79-row table).
A keypoint a family cannot produce (a face on SMPL, a body on MANO) is masked out, never guessed.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

from ..models.body_model import BodyModel, BodyOutput, shallow_copy
from ..models.lbs import atan2
from .layout import BODY_25, CONTOUR, FACE, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND

__all__ = ["KeypointRegressor", "keypoint_model", "SMPLX_VERTEX_IDS", "SMPL_VERTEX_IDS", "MANO_FINGERTIP_IDS"]

log = logging.getLogger(__name__)

# Published vertex ids of the extra keypoints on the official meshes (smplx documentation).
SMPLX_VERTEX_IDS = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6, "LBigToe": 5770, "LSmallToe": 5780,
    "LHeel": 8846, "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635, "lthumb": 5361, "lindex": 4933,
    "lmiddle": 5058, "lring": 5169, "lpinky": 5286, "rthumb": 8079, "rindex": 7669, "rmiddle": 7794,
    "rring": 7905, "rpinky": 8022,
}  # fmt: skip
SMPL_VERTEX_IDS = {  # SMPL and SMPL-H (6,890 vertices)
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583, "LBigToe": 3216, "LSmallToe": 3226,
    "LHeel": 3387, "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787, "lthumb": 2746, "lindex": 2319,
    "lmiddle": 2445, "lring": 2556, "lpinky": 2673, "rthumb": 6191, "rindex": 5782, "rmiddle": 5905,
    "rring": 6016, "rpinky": 6133,
}  # fmt: skip
MANO_FINGERTIP_IDS = {"thumb": 744, "index": 320, "middle": 443, "ring": 554, "pinky": 671}
_NUM_VERTICES = {"smplx": 10475, "smplh": 6890, "smpl": 6890}

# BODY_25 point -> ("joint", model joint name) or ("vertex", extra keypoint name)
_BODY_SOURCES = {
    "Nose": ("vertex", "nose"), "Neck": ("joint", "neck"), "MidHip": ("joint", "pelvis"),
    "REye": ("vertex", "reye"), "LEye": ("vertex", "leye"), "REar": ("vertex", "rear"), "LEar": ("vertex", "lear"),
    **{n: ("vertex", n) for n in ("LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")},
    **{f"{s}{part.capitalize()}": ("joint", f"{side}_{part}") for s, side in (("R", "right"), ("L", "left"))
       for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")},
}  # fmt: skip


def _hand_sources(side: str, joint_prefix: str) -> list[tuple[str, str]]:
    """The 21 OpenPose hand points of one side: wrist, then per finger 3 joints and the tip vertex."""
    out = [("joint", f"{joint_prefix}wrist")]
    for finger in ("thumb", "index", "middle", "ring", "pinky"):
        out += [("joint", f"{joint_prefix}{finger}{k}") for k in (1, 2, 3)]
        out.append(("vertex", f"{side[0]}{finger}"))
    return out


def _vertex_ids(model: BodyModel) -> dict[str, int]:
    extras = model.extras
    if "keypoint_names" in extras and "keypoint_vertex_ids" in extras:
        return {str(n): int(i) for n, i in zip(extras["keypoint_names"], extras["keypoint_vertex_ids"])}
    fam = model.family.name
    if fam == "mano":
        side = "r" if model.gender != "left" else "l"
        return {f"{side}{finger}": i for finger, i in MANO_FINGERTIP_IDS.items()} if model.num_vertices == 778 else {}
    if _NUM_VERTICES.get(fam) == model.num_vertices:
        return dict(SMPLX_VERTEX_IDS if fam == "smplx" else SMPL_VERTEX_IDS)
    log.warning("%s: unknown mesh (%d vertices) without keypoint ids; vertex keypoints are masked",
                model.path or model.family.display, model.num_vertices)
    return {}


class KeypointRegressor(nn.Module):
    """Maps `BodyOutput` (vertices, joints) of one model to keypoints (B, 135, 3) in our layout.

    `mask` (135,) says which keypoints this model can produce; the others are returned as zeros.
    """

    def __init__(self, model: BodyModel):
        super().__init__()
        names = model.joint_names
        vertex_ids = _vertex_ids(model)
        sources: list[tuple[str, str] | None] = [None] * NUM_KEYPOINTS
        if model.family.name != "mano" and model.family.name != "flame":
            for i, name in enumerate(BODY_25):
                sources[i] = _BODY_SOURCES[name]
            for idx, side in ((LEFT_HAND, "left"), (RIGHT_HAND, "right")):
                for i, src in zip(idx, _hand_sources(side, f"{side}_")):
                    sources[i] = src
        elif model.family.name == "mano":
            side = "left" if model.gender == "left" else "right"
            idx = LEFT_HAND if side == "left" else RIGHT_HAND
            for i, src in zip(idx, _hand_sources(side, "")):
                sources[i] = src

        joint_idx, vertex_idx, perm = [], [], np.full(NUM_KEYPOINTS, -1)
        for i, src in enumerate(sources):
            if src is None:
                continue
            kind, name = src
            if kind == "joint" and name in names:
                perm[i] = len(joint_idx)
                joint_idx.append(names.index(name))
            elif kind == "vertex" and name in vertex_ids:
                perm[i] = -2 - len(vertex_idx)  # resolved below, after the joints
                vertex_idx.append(vertex_ids[name])
        n_j, n_v = len(joint_idx), len(vertex_idx)
        perm = np.where(perm <= -2, n_j + (-2 - perm), perm)

        # static face landmarks (iBUG 17-67) and the contour (iBUG 0-16)
        faces = torch.as_tensor(model.faces, dtype=torch.long)
        lmk_vertices, lmk_bary = [], []
        extras = model.extras
        if "lmk_faces_idx" in extras and "lmk_bary_coords" in extras:
            lmk_vertices.append(faces[torch.as_tensor(extras["lmk_faces_idx"], dtype=torch.long)])
            lmk_bary.append(torch.as_tensor(np.asarray(extras["lmk_bary_coords"], dtype=np.float64)))
            perm[FACE] = n_j + n_v + np.arange(len(FACE))
        self.dynamic_contour = False
        if "contour_lmk_faces_idx" in extras:
            lmk_vertices.append(faces[torch.as_tensor(extras["contour_lmk_faces_idx"], dtype=torch.long)])
            lmk_bary.append(torch.as_tensor(np.asarray(extras["contour_lmk_bary_coords"], dtype=np.float64)))
            perm[CONTOUR] = n_j + n_v + sum(len(v) for v in lmk_vertices[:-1]) + np.arange(len(CONTOUR))
        elif "dynamic_lmk_faces_idx" in extras and model.family.name == "smplx":
            self.dynamic_contour = True
            self.register_buffer("dyn_vertices", faces[torch.as_tensor(extras["dynamic_lmk_faces_idx"],
                                                                       dtype=torch.long)], persistent=False)
            self.register_buffer("dyn_bary", torch.as_tensor(np.asarray(extras["dynamic_lmk_bary_coords"]),
                                                             dtype=model.v_template.dtype), persistent=False)
            self.neck_chain = [names.index(n) for n in ("neck", "spine3", "spine2", "spine1", "pelvis")]
        n_static = sum(len(v) for v in lmk_vertices)
        if self.dynamic_contour:
            perm[CONTOUR] = n_j + n_v + n_static + np.arange(len(CONTOUR))
        zero_row = n_j + n_v + n_static + (len(CONTOUR) if self.dynamic_contour else 0)
        mask = perm >= 0
        perm = np.where(mask, perm, zero_row)

        dtype = model.v_template.dtype
        self.register_buffer("joint_idx", torch.tensor(joint_idx, dtype=torch.long), persistent=False)
        self.register_buffer("vertex_idx", torch.tensor(vertex_idx, dtype=torch.long), persistent=False)
        self.register_buffer("lmk_vertices", torch.cat(lmk_vertices) if lmk_vertices else
                             torch.zeros(0, 3, dtype=torch.long), persistent=False)
        self.register_buffer("lmk_bary", (torch.cat(lmk_bary) if lmk_bary else torch.zeros(0, 3)).to(dtype),
                             persistent=False)
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long), persistent=False)
        self.register_buffer("mask", torch.as_tensor(mask), persistent=False)
        self.to(model.v_template.device)

    def vertex_ids(self) -> Tensor:
        """(K,) every mesh vertex a keypoint is read from (sorted, unique)."""
        used = [self.vertex_idx, self.lmk_vertices.flatten()]
        if self.dynamic_contour:
            used.append(self.dyn_vertices.flatten())
        return torch.unique(torch.cat(used))

    def on_subset(self, vertex_ids: Tensor) -> "KeypointRegressor":
        """This regressor for a model that computes only `vertex_ids` (BodyModel.vertex_subset): the same
        keypoints, the vertex indices renumbered into the subset (every one it reads must be in it)."""
        lookup = torch.full((int(vertex_ids.max()) + 1,), -1, dtype=torch.long, device=vertex_ids.device)
        lookup[vertex_ids] = torch.arange(len(vertex_ids), device=vertex_ids.device)
        sub = shallow_copy(self)
        names = ["vertex_idx", "lmk_vertices"] + (["dyn_vertices"] if self.dynamic_contour else [])
        for name in names:
            ids = lookup[getattr(self, name)]
            if bool((ids < 0).any()):
                raise ValueError(f"the subset lacks vertices that {name} reads")
            setattr(sub, name, ids)
        return sub

    def forward(self, output: BodyOutput) -> Tensor:
        """Keypoints (B, 135, 3) in the model's space (masked ones are zero)."""
        v, j = output.vertices, output.joints
        parts = [j[:, self.joint_idx], v[:, self.vertex_idx], self._interpolate(v, self.lmk_vertices, self.lmk_bary)]
        if self.dynamic_contour:
            rows = self.contour_rows(output.rot_mats)
            parts.append(self._interpolate_batched(v, self.dyn_vertices[rows], self.dyn_bary[rows]))
        parts.append(v.new_zeros(v.shape[0], 1, 3))
        return torch.cat(parts, 1)[:, self.perm]

    @staticmethod
    def _interpolate(v: Tensor, tri: Tensor, bary: Tensor) -> Tensor:
        """Points on triangles: v (B, V, 3), tri (L, 3) vertex ids, bary (L, 3) -> (B, L, 3)."""
        return (v[:, tri] * bary[None, :, :, None]).sum(2)

    @staticmethod
    def _interpolate_batched(v: Tensor, tri: Tensor, bary: Tensor) -> Tensor:
        """As `_interpolate` with per-item triangles: tri (B, L, 3), bary (B, L, 3)."""
        batch = torch.arange(v.shape[0], device=v.device)[:, None, None]
        return (v[batch, tri] * bary[..., None]).sum(2)

    def contour_rows(self, rot_mats: Tensor) -> Tensor:
        """Row of SMPL-X's dynamic contour table for each item (B,): the head's yaw, in whole degrees,
        from the global rotation of the neck (0..39 for one direction, 40..78 for the other)."""
        rot = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device).expand(rot_mats.shape[0], 3, 3)
        for idx in self.neck_chain:  # neck first: R = R_pelvis ... R_spine3 R_neck
            rot = rot_mats[:, idx] @ rot
        yaw = atan2(-rot[:, 2, 0], torch.sqrt(rot[:, 0, 0] ** 2 + rot[:, 1, 0] ** 2))
        angle = torch.round(torch.clamp(-torch.rad2deg(yaw), max=39)).long()
        return torch.where(angle < 0, torch.clamp(39 - angle, max=78), angle)


def keypoint_model(model: BodyModel, regressor: KeypointRegressor | None = None) -> tuple[BodyModel, KeypointRegressor]:
    """(a model that computes only the vertices keypoints are read from, its regressor): the same keypoints
    as `regressor(model(...))` at a fraction of the cost (BodyModel.vertex_subset), for objectives without
    a mesh term."""
    regressor = regressor if regressor is not None else KeypointRegressor(model)
    ids = regressor.vertex_ids()
    if len(ids) == 0:
        ids = torch.zeros(1, dtype=torch.long, device=model.v_template.device)
    return model.vertex_subset(ids), regressor.on_subset(ids)
