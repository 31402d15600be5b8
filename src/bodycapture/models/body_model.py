"""`BodyModel`: a differentiable SMPL / SMPL-H / SMPL-X / MANO / FLAME layer.

Parameter names, joint orders and conventions are those of SMPL-X (metres, y up, axis-angle poses):

    model = load_model("smplx", gender="neutral", num_betas=10)
    out = model(betas=betas, body_pose=body_pose, global_orient=go)   # any subset; the rest are zero
    out.vertices  # (B, V, 3)
    out.joints    # (B, J, 3)

Unlike the `smplx` package the layer holds no optimisable parameters: every call takes its parameters
as arguments, so one model serves any number of fits, batches and devices at once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from .families import Family
from .files import ModelData
from .lbs import KinematicChain, axis_angle_to_matrix, lbs, matrix_to_axis_angle, rows_matmul

__all__ = ["BodyModel", "BodyOutput"]

# The shape and expression dimensions used by default: 10 each, as in SMPLify-X (Pavlakos et al. 2019).
DEFAULT_NUM_BETAS = 10
DEFAULT_NUM_EXPRESSION = 10
# smplx's default number of hand PCA components (SMPLify-X's fit_smplx.yaml uses 12).
DEFAULT_NUM_PCA_COMPS = 6


@dataclass
class BodyOutput:
    """Result of `BodyModel.forward`.

    vertices: (B, V, 3); joints: (B, J, 3) posed kinematic joints (model order, `transl` added);
    full_pose: (B, 3 J) axis-angle of every joint, hand means included (or (B, J, 3, 3) rotation
    matrices when the model was called with pose2rot=False); rot_mats: (B, J, 3, 3);
    betas (B, num_betas), expression (B, num_expression) or None, transl (B, 3): what was used.
    `full_pose` may be given as a function that computes it: it is then computed on first use (joints
    given as rotation matrices need a conversion that a fitting loop, which never reads it, should not pay).
    """

    vertices: Tensor
    joints: Tensor
    full_pose: Tensor | Callable[[], Tensor]
    rot_mats: Tensor
    betas: Tensor
    expression: Tensor | None
    transl: Tensor

    def __getattribute__(self, name):
        value = object.__getattribute__(self, name)
        if name == "full_pose" and callable(value):
            value = value()
            object.__setattr__(self, "full_pose", value)
        return value


class BodyModel(nn.Module):
    """A body model of the SMPL family, batched, on any device and dtype.

    Args:
        data: validated arrays from `read_model_file` (or `load_model`, which wraps all of this).
        num_betas: shape components to use (the first N columns); default min(10, available).
        num_expression_coeffs: expression components (SMPL-X, FLAME); default min(10, available).
        use_pca: hand poses given as PCA coefficients (True) or as 45 axis-angle values (False); by
            default True when the file has a hand PCA basis (official SMPL-H/X, MANO) and False when it
            has none or an identity one (the open model, unmerged SMPL-H pickles).
        num_pca_comps: number of hand PCA coefficients when use_pca (1..45).
        flat_hand_mean: if False (the default, as in SMPL-X), the file's mean hand pose is added to
            the hand poses, so zero hand parameters give a relaxed hand; if True zero means flat.
        batch_size: batch size used when a call passes no parameter at all.
        use_pose_correctives: apply the pose-corrective blend shapes (posedirs).
        dtype, device: of every buffer; inputs are converted to them.
    """

    def __init__(
        self,
        data: ModelData,
        num_betas: int | None = None,
        num_expression_coeffs: int | None = None,
        use_pca: bool | None = None,
        num_pca_comps: int = DEFAULT_NUM_PCA_COMPS,
        flat_hand_mean: bool = False,
        batch_size: int = 1,
        use_pose_correctives: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        self.path = data.path
        self.description = data.description
        self.extras = data.extras  # landmark embeddings, keypoint ids, metadata of the file
        self.family: Family = data.family
        self.gender = data.gender
        self.batch_size = int(batch_size)
        if use_pca is None:
            use_pca = any(c.shape != (45, 45) or not np.allclose(c, np.eye(45)) for c in data.hand_components.values())
        self.use_pca = bool(use_pca) and bool(self.family.hand_parts)
        self.flat_hand_mean = bool(flat_hand_mean)

        self.num_betas = _choose_count("num_betas", num_betas, DEFAULT_NUM_BETAS, data.num_shape, data)
        if self.family.has_expression:
            self.num_expression = _choose_count(
                "num_expression_coeffs", num_expression_coeffs, DEFAULT_NUM_EXPRESSION, data.num_expression, data
            )
        else:
            self.num_expression = 0
        self.num_pca_comps = int(num_pca_comps) if self.use_pca else 45
        if self.use_pca and not 1 <= self.num_pca_comps <= 45:
            raise ValueError(f"num_pca_comps must be in 1..45, got {num_pca_comps}")

        def buf(name: str, array, dt=dtype) -> None:
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(array), dtype=dt), persistent=False)

        shape_cols = list(range(self.num_betas))
        expr_cols = list(range(data.expression_start, data.expression_start + self.num_expression))
        shapedirs = data.shapedirs[:, :, shape_cols + expr_cols]
        buf("v_template", data.v_template)
        buf("shapedirs", shapedirs)
        buf("J_regressor", data.J_regressor)
        num_v = shapedirs.shape[0]
        joints = regress(data.J_regressor, np.concatenate([data.v_template, shapedirs.reshape(num_v, -1)], 1))
        buf("joint_template", joints[:, :3])
        buf("joint_shapedirs", joints[:, 3:].reshape(-1, 3, shapedirs.shape[2]))
        buf("lbs_weights", data.weights)
        buf("faces_tensor", data.faces, torch.long)
        buf("parents", data.parents, torch.long)
        self.faces = data.faces
        has_correctives = data.posedirs is not None and np.any(data.posedirs)
        if use_pose_correctives and has_correctives:
            # (V, 3, P) -> (P, 3V), the layout that multiplies the (B, P) pose feature directly.
            buf("posedirs", data.posedirs.reshape(-1, data.posedirs.shape[2]).T)
        else:
            self.posedirs = None

        for part, _ in self.family.hand_parts:
            if self.use_pca and part not in data.hand_components:
                raise ValueError(
                    f"{data.path or 'model'}: no hand PCA basis for {part} in this file; "
                    "use use_pca=False (or a file merged with MANO's hand PCA)"
                )
            comps = data.hand_components.get(part, np.eye(45))[: self.num_pca_comps]
            if len(comps) < self.num_pca_comps:
                from ..errors import ModelFileError

                raise ModelFileError(data.path or "<model>", f"the {part} PCA basis has {len(comps)} components, "
                                                             f"{self.num_pca_comps} asked for (num_pca_comps)")
            mean = np.zeros(45) if flat_hand_mean else data.hand_mean.get(part, np.zeros(45))
            buf(f"{part}_components", comps)
            buf(f"{part}_mean", mean)
        self._chain = KinematicChain.from_parents(self.parents)
        self.to(device)

    # ----------------------------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_joints(self) -> int:
        return self.parents.shape[0]

    @property
    def joint_names(self) -> list[str]:
        return list(self.family.joint_names)

    def vertex_subset(self, vertex_ids) -> "BodyModel":
        """A model that computes only the vertices `vertex_ids` (K,), in that order, and the same joints.

        For objectives that need keypoints, not the mesh: with K = a few hundred instead of 10,475 a
        forward and backward pass costs about a tenth (the joints come from `joint_template` and
        `joint_shapedirs`, which hold the whole mesh's regression). It shares the other buffers with this
        model and has no faces. Moving it to another device or dtype moves only the copy."""
        ids = torch.as_tensor(np.asarray(vertex_ids), dtype=torch.long, device=self.v_template.device)
        sub = shallow_copy(self)
        sub.v_template = self.v_template[ids]
        sub.shapedirs = self.shapedirs[ids]
        sub.lbs_weights = self.lbs_weights[ids]
        if self.posedirs is not None:
            sub.posedirs = self.posedirs.reshape(self.posedirs.shape[0], -1, 3)[:, ids].reshape(self.posedirs.shape[0], -1)
        sub.faces_tensor = self.faces_tensor.new_zeros(0, 3)
        sub.faces = None
        return sub

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._chain = self._chain.apply(fn)  # keep the chain's indices on our device
        return out

    def parameter_sizes(self, pose2rot: bool = True) -> dict[str, int]:
        """Flat size of every parameter `forward` accepts, e.g. {'betas': 10, 'body_pose': 63, ...}."""
        sizes = {"betas": self.num_betas}
        if self.family.has_expression:
            sizes["expression"] = self.num_expression
        hands = dict(self.family.hand_parts)
        for name, n in self.family.pose_parts:
            if name in hands and self.use_pca:
                sizes[name] = self.num_pca_comps
            else:
                sizes[name] = n * (3 if pose2rot else 9)
        sizes["transl"] = 3
        return sizes

    def zero_parameters(self, batch_size: int | None = None, requires_grad: bool = False) -> dict[str, Tensor]:
        """A dict of zero parameters (B, size) on the model's device and dtype, e.g. to optimise."""
        b = self.batch_size if batch_size is None else batch_size
        return {
            name: torch.zeros(b, n, dtype=self.v_template.dtype, device=self.v_template.device).requires_grad_(
                requires_grad
            )
            for name, n in self.parameter_sizes().items()
        }

    # ----------------------------------------------------------------------------------------------
    def forward(self, pose2rot: bool = True, **params) -> BodyOutput:
        """Pose and shape the model.

        Keyword parameters (each optional, missing ones are zero; leading dimension B or 1):
            betas (B, num_betas); expression (B, num_expression); transl (B, 3); and the family's pose
            parameters (`parameter_sizes()` lists them): axis-angle (B, 3 N) or (B, N, 3), hand poses as
            (B, num_pca_comps) PCA coefficients when use_pca. A pose parameter may also be given as
            rotation matrices (B, N, 3, 3) (e.g. body_pose straight from VPoser's decoder, saving the
            round trip through axis-angle); full_pose then holds their axis-angle without gradient.
            With pose2rot=False every pose parameter is rotation matrices (B, N, 3, 3) or (B, 9 N), hand
            means are not added and PCA is off.
        """
        sizes = self.parameter_sizes(pose2rot)
        unknown = set(params) - set(sizes)
        if unknown:
            raise TypeError(
                f"{self.family.display} model got unknown parameter(s) {sorted(unknown)}; "
                f"it accepts {list(sizes)}"
            )
        if not pose2rot and self.use_pca:
            raise ValueError("pose2rot=False needs a model built with use_pca=False")
        dtype, device = self.v_template.dtype, self.v_template.device
        given = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in params.items() if v is not None}
        batch = self._batch_size(given)
        pose_joints = dict(self.family.pose_parts)
        hands = dict(self.family.hand_parts)
        matrices = {}  # pose parameters given as rotation matrices (B, N, 3, 3) in axis-angle mode
        if pose2rot:
            for name, value in given.items():
                if value.dim() == 4 and name in pose_joints:
                    n = pose_joints[name]
                    if value.shape[1:] != (n, 3, 3) or (name in hands and self.use_pca):
                        raise ValueError(f"{name}: rotation matrices must be (B, {n}, 3, 3)"
                                         + (" and need use_pca=False" if name in hands else ""))
                    matrices[name] = value.expand(batch, n, 3, 3)
        flat = {}
        for name, size in sizes.items():
            if name not in given or name in matrices:
                flat[name] = None
                continue
            value = given[name]
            t = value.reshape(value.shape[0] if value.dim() else 1, -1)
            if t.shape[1] != size:
                raise ValueError(f"{name} has {t.shape[1]} values per item, expected {size}")
            flat[name] = t if t.shape[0] == batch else t.expand(batch, size)  # (an expand is a graph node)

        zeros = lambda n: torch.zeros(batch, n, dtype=dtype, device=device)  # noqa: E731
        betas = flat["betas"] if flat["betas"] is not None else zeros(self.num_betas)
        expression = None
        coeffs = betas
        if self.family.has_expression:
            expression = flat["expression"] if flat["expression"] is not None else zeros(self.num_expression)
            coeffs = torch.cat([betas, expression], 1)
        transl = flat["transl"] if flat["transl"] is not None else zeros(3)

        if pose2rot and matrices:  # given matrices replace the Rodrigues of their (zero) axis-angle slots
            full_pose = self._full_axis_angle(flat, batch)  # (B, J, 3)
            computed = axis_angle_to_matrix(full_pose)
            rot_parts, start = [], 0
            for name, n in self.family.pose_parts:
                mats = matrices.get(name)
                rot_parts.append(computed[:, start : start + n] if mats is None else mats)
                start += n
            rot_mats = torch.cat(rot_parts, 1)
            full_pose_out = partial(_axis_angle_output, full_pose, matrices, self.family.pose_parts)
        elif pose2rot:
            full_pose = self._full_axis_angle(flat, batch)  # (B, J, 3)
            rot_mats = axis_angle_to_matrix(full_pose)
            full_pose_out = full_pose.reshape(batch, -1)
        else:
            eye = torch.eye(3, dtype=dtype, device=device)
            parts = [
                eye.expand(batch, n, 3, 3) if flat[name] is None else flat[name].reshape(batch, n, 3, 3)
                for name, n in self.family.pose_parts
            ]
            rot_mats = torch.cat(parts, 1)
            full_pose_out = rot_mats

        vertices, joints = lbs(
            coeffs,
            rot_mats,
            self.v_template,
            self.shapedirs,
            self.posedirs,
            self.joint_template,
            self.joint_shapedirs,
            self.parents,
            self.lbs_weights,
            self._chain,
        )
        return BodyOutput(
            vertices=vertices + transl[:, None],
            joints=joints + transl[:, None],
            full_pose=full_pose_out,
            rot_mats=rot_mats,
            betas=betas,
            expression=expression,
            transl=transl,
        )

    def _full_axis_angle(self, flat: dict, batch: int) -> Tensor:
        """Concatenate the pose parameters into (B, J, 3) axis-angle, decoding hand PCA and means."""
        hands = dict(self.family.hand_parts)
        parts = []
        for name, n in self.family.pose_parts:
            value = flat[name]
            if name in hands:
                if value is None:
                    aa = getattr(self, f"{name}_mean").expand(batch, 45)
                else:
                    aa = rows_matmul(value, getattr(self, f"{name}_components")) if self.use_pca else value
                    aa = aa + getattr(self, f"{name}_mean")
            else:
                aa = value if value is not None else self.v_template.new_zeros(batch, 3 * n)
            parts.append(aa.reshape(batch, n, 3))
        return torch.cat(parts, 1)

    def _batch_size(self, given: dict[str, Tensor]) -> int:
        sizes = {int(v.shape[0]) if v.dim() else 1 for v in given.values()}
        sizes.discard(1)
        if len(sizes) > 1:
            raise ValueError(f"parameters have different batch sizes {sorted(sizes)} (1 broadcasts)")
        if sizes:
            return sizes.pop()
        return 1 if given else self.batch_size

    def extra_repr(self) -> str:
        return (
            f"{self.description}, num_betas={self.num_betas}, num_expression={self.num_expression}, "
            f"use_pca={self.use_pca}, num_pca_comps={self.num_pca_comps}, flat_hand_mean={self.flat_hand_mean}"
        )


def _axis_angle_output(full_pose: Tensor, matrices: dict[str, Tensor], pose_parts) -> Tensor:
    """BodyOutput.full_pose (B, 3 J) when some pose parameters were given as rotation matrices: their
    joints' axis-angle (not differentiable) in place of the zero slots of `full_pose` (B, J, 3)."""
    parts, start = [], 0
    for name, n in pose_parts:
        mats = matrices.get(name)
        parts.append(full_pose[:, start : start + n] if mats is None else matrix_to_axis_angle(mats.detach()))
        start += n
    return torch.cat(parts, 1).reshape(full_pose.shape[0], -1)


def regress(regressor: np.ndarray, values: np.ndarray) -> np.ndarray:
    """regressor (J, V) @ values (V, K) -> (J, K) float64, summed over each row's nonzero weights by numpy's
    own loops, in an order that does not depend on threads. numpy's BLAS sums in an order that depends on
    how many threads it started with, so the float32 model (and every fit, which follows the rounding)
    depended on whether numpy was loaded before `bodycapture` pinned it to one thread (the `bodycapture`
    command) or not (most Python programs). About 15 ms for the open model (30,668 nonzero weights, 63
    columns)."""
    rows, cols = np.nonzero(regressor)  # row by row, vertices in order
    terms = regressor[rows, cols].astype(np.float64)[:, None] * np.asarray(values, dtype=np.float64)[cols]
    counts = np.bincount(rows, minlength=regressor.shape[0])
    out = np.zeros((regressor.shape[0], terms.shape[1]))
    has = counts > 0
    out[has] = np.add.reduceat(terms, (np.cumsum(counts) - counts)[has], axis=0)
    return out


def shallow_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` that shares its tensors but has its own parameter, buffer and submodule tables:
    replacing a buffer of the copy (e.g. a subset of it) leaves the original as it was."""
    sub = copy.copy(module)
    sub._parameters, sub._buffers, sub._modules = dict(module._parameters), dict(module._buffers), dict(module._modules)
    return sub


def _choose_count(option: str, requested: int | None, default: int, available: int, data: ModelData) -> int:
    if requested is None:
        return min(default, available)
    if not 0 <= requested <= available:
        raise ValueError(
            f"{data.path or 'model'}: {option}={requested}, but the file has {available} such components"
        )
    return int(requested)
