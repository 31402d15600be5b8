"""Reading SMPL-family model files (`.npz`, and chumpy `.pkl` without chumpy) into validated arrays.

The official SMPL, SMPL-H, MANO and FLAME downloads are Python-2 pickles holding chumpy arrays and
scipy sparse matrices. We never import chumpy (unmaintained, broken on NumPy >= 1.24) nor scipy here: a
restricted unpickler maps those classes to stand-ins that keep only their array state, turns them into
plain NumPy arrays, and refuses every other class, so a model file cannot run code.

Every problem is reported as a `ModelFileError` whose message is one line naming the file, the key and
what was expected.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelFileError
from .families import Family, family_from_joint_count, get_family

try:  # zlib-ng (a dependency) inflates the model files about 4x faster than zlib; zlib where it is missing
    from zlib_ng import zlib_ng as _inflate
except ImportError:  # pragma: no cover - an install without its dependencies
    _inflate = zlib

__all__ = ["ModelData", "read_model_file", "model_data_from_arrays", "gender_from_filename"]

# SMPL-X v1.1 and FLAME 2020 store 300 shape columns, then expression columns (smplx documentation).
_FULL_SHAPE_SPACE = 300
# Older SMPL-X (v1.0) files store 10 shape columns, then 10 expression columns.
_SHORT_SHAPE_SPACE = 10


@dataclass
class ModelData:
    """A body model's arrays in the official layout, validated. All arrays are NumPy.

    v_template (V, 3); faces (F, 3) int64; shapedirs (V, 3, S) with `num_shape` shape columns first and
    `num_expression` expression columns from column `expression_start` on; posedirs (V, 3, 9 (J-1)) or None; J_regressor (J, V);
    weights (V, J); parents (J,) with -1 at the root. hand_components / hand_mean: per hand pose
    parameter (e.g. 'left_hand_pose'), the (45, 45) PCA basis (rows are components) and (45,) mean.
    extras: every other array in the file (landmarks, UVs, our metadata keys).
    """

    family: Family
    gender: str
    v_template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    num_shape: int
    expression_start: int
    num_expression: int
    posedirs: np.ndarray | None
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    hand_components: dict[str, np.ndarray] = field(default_factory=dict)
    hand_mean: dict[str, np.ndarray] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_joints(self) -> int:
        return self.parents.shape[0]

    @property
    def description(self) -> str:
        """Human-readable name, e.g. 'SMPL-X neutral (10475 vertices, 55 joints, 300 shape, 100 expr.)'."""
        expr = f", {self.num_expression} expression" if self.family.has_expression else ""
        return (
            f"{self.family.display} {self.gender} ({self.num_vertices} vertices, {self.num_joints} joints, "
            f"{self.num_shape} shape{expr} components)"
        )


# --------------------------------------------------------------------------------------------------
# Reading raw arrays


class _ChumpyStandIn:
    """Takes the place of any chumpy class while unpickling; keeps the pickled state."""

    def __setstate__(self, state):
        self._state = state

    def to_array(self) -> np.ndarray | None:
        state = getattr(self, "_state", None)
        if isinstance(state, tuple):  # (dict state, slot state)
            state = state[0]
        if isinstance(state, dict) and "x" in state:
            return np.asarray(state["x"])
        return None


class _SparseStandIn:
    """Takes the place of a scipy.sparse matrix while unpickling; densified afterwards."""

    def __setstate__(self, state):
        self._state = state

    def to_array(self) -> np.ndarray | None:
        s = getattr(self, "_state", None)
        if not isinstance(s, dict):
            return None
        shape = tuple(int(x) for x in s.get("_shape", s.get("shape", ())))
        fmt = type(self).__name__[:3]
        if len(shape) != 2 or "data" not in s:
            return None
        if min(shape) < 0 or shape[0] * shape[1] * 8 > MAX_ARRAY_BYTES:  # densified below: check first
            raise ValueError(f"a sparse matrix of shape {shape} would take {shape[0] * shape[1] * 8 / 2**30:.1f} GiB "
                             f"dense (at most {MAX_ARRAY_BYTES >> 20} MiB)")
        data = np.asarray(s["data"], dtype=np.float64)
        dense = np.zeros(shape, dtype=np.float64)
        if fmt in ("csc", "csr"):
            indptr, indices = np.asarray(s["indptr"]), np.asarray(s["indices"])
            outer = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            rows, cols = (indices, outer) if fmt == "csc" else (outer, indices)
        elif fmt == "coo":
            rows, cols = (s["coords"] if "coords" in s else (s["row"], s["col"]))
        else:
            return None
        np.add.at(dense, (np.asarray(rows), np.asarray(cols)), data)
        return dense


_SPARSE_NAMES = {f"{fmt}_{kind}" for fmt in ("csc", "csr", "coo") for kind in ("matrix", "array")}
_NUMPY_NAMES = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}
_PLAIN_GLOBALS = {
    ("copy_reg", "_reconstructor"): ("copyreg", "_reconstructor"),
    ("copyreg", "_reconstructor"): ("copyreg", "_reconstructor"),
    ("__builtin__", "object"): ("builtins", "object"),
    ("builtins", "object"): ("builtins", "object"),
    ("__builtin__", "set"): ("builtins", "set"),
    ("builtins", "set"): ("builtins", "set"),
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


def _numpy_attr(submodule: str, name: str):
    """numpy.core.X.name under NumPy 1, numpy._core.X.name under NumPy 2, whichever the file names."""
    for prefix in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{prefix}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy.{submodule}.{name} is not available")


def _empty_bytes(*args) -> bytes:
    """bytes() for the unpickler. Protocol 2 writes an empty array's data as `bytes()` (other data goes through
    _codecs.encode); `bytes(2_000_000_000)` is 100 bytes of pickle that would allocate 2 GB, so only the
    empty call is allowed."""
    if args:
        raise pickle.UnpicklingError(f"refusing bytes{args!r:.40} (only bytes() appears in model pickles)")
    return b""


class _ModelUnpickler(pickle.Unpickler):
    """Unpickler that allows NumPy arrays, chumpy arrays and scipy sparse matrices, and nothing else."""

    def find_class(self, module: str, name: str):
        if module.startswith("chumpy"):
            return type(name, (_ChumpyStandIn,), {"__module__": module})
        if module.startswith("scipy.sparse") and name in _SPARSE_NAMES:
            return type(name, (_SparseStandIn,), {"__module__": module})
        if module.startswith("numpy") and (module.rsplit(".", 1)[-1], name) in _NUMPY_NAMES:
            return _numpy_attr(module.rsplit(".", 1)[-1], name)
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module in ("__builtin__", "builtins") and name == "bytes":
            return _empty_bytes
        if (module, name) in _PLAIN_GLOBALS:
            real_module, real_name = _PLAIN_GLOBALS[(module, name)]
            return getattr(importlib.import_module(real_module), real_name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not an array type)")


def _plain(value, path: Path, key: str):
    """Replace chumpy / sparse stand-ins by NumPy arrays; refuse stand-ins without array state."""
    if isinstance(value, (_ChumpyStandIn, _SparseStandIn)):
        try:
            arr = value.to_array()
        except Exception as err:  # noqa: BLE001 - a malformed state of every kind
            raise ModelFileError(path, f"key {key!r} holds a malformed array ({type(err).__name__}: {err})") from None
        if arr is None:
            kind = type(value).__module__ + "." + type(value).__name__
            raise ModelFileError(path, f"key {key!r} holds a {kind} object that is not a plain array")
        return arr
    return value


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ModelUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise ModelFileError(path, f"not a model pickle: {err}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as err:
        raise ModelFileError(path, f"corrupt or truncated pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(path, f"expected a pickled dict of arrays, found {type(obj).__name__}")
    return {str(k): _plain(v, path, str(k)) for k, v in obj.items()}


# No body model comes near these (the largest arrays: SMPL-X's posedirs, 122 MB in float64; our open
# model's 400-column shapedirs, 130 MB): a file that claims more is corrupt or hostile.
MAX_ARRAY_BYTES = 512 << 20
MAX_TOTAL_BYTES = 1536 << 20


def _npy_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from the .npy header at the start of the file object `fh`."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def _npz_sizes(path: Path) -> dict[str, int]:
    """Bytes each array of an .npz will take, read from the .npy headers without loading anything."""
    sizes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as fh:
                shape, _, dtype = _npy_header(fh)
            sizes[info.filename[:-4]] = int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 1)
    return sizes


def _npz_arrays(path: Path, backend=None) -> dict[str, np.ndarray]:
    """Every non-pickled array of an .npz archive. Each member
    is inflated in one call, which frees the GIL: `np.load` inflates in small chunks and holds the
    GIL between them, so reading in a thread while torch is imported took longer than reading after it.
    CRCs are checked as zipfile does. Pickled members (metadata such as joint2num) are skipped.
    `backend`: the zlib module that inflates (default zlib-ng's, the same bytes as zlib's: the open model's
    SMPL-X layout holds 140 MB of mostly zero arrays, 0.46 s to inflate with zlib on our 2-core VM, 0.12 s
    with zlib-ng, on the first result's critical path)."""
    backend = backend or _inflate
    out = {}
    with open(path, "rb") as fh, zipfile.ZipFile(fh) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"member {info.filename}: bad local header")
            name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            fh.seek(info.header_offset + 30 + name_len + extra_len)
            raw = fh.read(info.compress_size)
            if len(raw) != info.compress_size:
                raise EOFError(f"member {info.filename} is truncated")
            if info.compress_type == zipfile.ZIP_DEFLATED:  # never more than the directory says (as zipfile):
                inflater = backend.decompressobj(-15)  # a stream that would inflate further is cut off here
                data = inflater.decompress(raw, max(info.file_size, 1))
                if inflater.unconsumed_tail:
                    raise ValueError(f"member {info.filename}: inflates past its size")
            elif info.compress_type == zipfile.ZIP_STORED:
                data = raw
            else:
                raise ValueError(f"member {info.filename}: unsupported compression {info.compress_type}")
            if len(data) != info.file_size or backend.crc32(data) != info.CRC:
                raise ValueError(f"member {info.filename}: size or CRC mismatch")
            header = io.BytesIO(data[:65536])
            shape, fortran, dtype = _npy_header(header)
            if dtype.hasobject:  # pickled: not needed, never unpickled
                continue
            count = int(np.prod(shape, dtype=np.int64))
            # a writable copy (numpy copies without the GIL): callers may hand the arrays to torch
            array = np.frombuffer(data, dtype=dtype, count=count, offset=header.tell()).copy()
            out[info.filename[:-4]] = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    return out


def _read_npz(path: Path) -> dict:
    out = {}
    try:
        sizes = _npz_sizes(path)
        for key, size in sizes.items():
            if size > MAX_ARRAY_BYTES:
                raise ModelFileError(path, f"key {key!r} claims {size / 2**30:.1f} GiB, more than any body model "
                                           f"holds ({MAX_ARRAY_BYTES >> 20} MiB per array at most): a corrupt or "
                                           "hostile file")
        if sum(sizes.values()) > MAX_TOTAL_BYTES:
            raise ModelFileError(path, f"its arrays claim {sum(sizes.values()) / 2**30:.1f} GiB in all, more than any "
                                       f"body model holds ({MAX_TOTAL_BYTES >> 20} MiB at most)")
        out = _npz_arrays(path)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error, _inflate.error,
            MemoryError) as err:
        raise ModelFileError(path, f"corrupt or truncated .npz file ({type(err).__name__}: {err})") from None
    return out


def _read_raw(path: Path) -> dict:
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return _read_npz(path)
    if head[:1] == b"\x80" or path.suffix == ".pkl":
        return _read_pickle(path)
    raise ModelFileError(path, "not a model file (expected a .npz archive or a .pkl pickle)")


# --------------------------------------------------------------------------------------------------
# Validation


_GENDER_PATTERNS = [
    ("female", re.compile(r"(female|(^|[_\-])f[_\-])", re.I)),
    ("male", re.compile(r"(male|(^|[_\-])m[_\-])", re.I)),
    ("neutral", re.compile(r"(neutral|generic)", re.I)),
    ("right", re.compile(r"right", re.I)),
    ("left", re.compile(r"left", re.I)),
]


def gender_from_filename(name: str) -> str | None:
    """'SMPLX_FEMALE.npz' -> 'female', 'basicModel_m_lbs_10_207_0_v1.0.0.pkl' -> 'male', else None."""
    for gender, pattern in _GENDER_PATTERNS:
        if pattern.search(name):
            return gender
    return None


def _array(arrays: dict, key: str, path, ndim: int, *, dtype=np.float64) -> np.ndarray:
    if key not in arrays:
        raise ModelFileError(path, f"missing key {key!r}")
    try:
        arr = np.asarray(arrays[key])
        if dtype == np.float64 and arr.dtype in (np.float32, np.float64):
            pass  # keep float32 files in float32: the model casts once to its own dtype
        else:
            arr = arr.astype(dtype)
    except (TypeError, ValueError):
        raise ModelFileError(path, f"key {key!r} is not a numeric array") from None
    if arr.ndim != ndim:
        raise ModelFileError(path, f"key {key!r} has shape {arr.shape}, expected {ndim} dimensions")
    if dtype == np.float64 and not np.isfinite(arr).all():
        raise ModelFileError(path, f"key {key!r} contains NaN or infinite values")
    return arr


def _expect_shape(path, key: str, arr: np.ndarray, expected: tuple) -> None:
    ok = len(arr.shape) == len(expected) and all(e is None or a == e for a, e in zip(arr.shape, expected))
    if not ok:
        shown = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ModelFileError(path, f"key {key!r} has shape {arr.shape}, expected {shown}")


def _split_shape_space(family: Family, arrays: dict, total: int, path) -> tuple[int, int, int]:
    """(number of shape columns, column where expressions start, number of expression columns)."""
    if not family.has_expression:
        return total, total, 0
    if total >= _FULL_SHAPE_SPACE + 1:  # SMPL-X v1.1, FLAME: 300 shape slots, then expression
        n_shape, start = _FULL_SHAPE_SPACE, _FULL_SHAPE_SPACE
    elif total > _SHORT_SHAPE_SPACE:  # SMPL-X v1.0: 10 shape, then expression
        n_shape, start = _SHORT_SHAPE_SPACE, _SHORT_SHAPE_SPACE
    else:
        return total, total, 0
    n_expr = total - start
    if "num_shape_components" in arrays:  # our files say how many slots are filled (the rest are zero)
        try:
            n_shape = int(np.asarray(arrays["num_shape_components"]))
            n_expr = int(np.asarray(arrays.get("num_expression_components", n_expr)))
        except (TypeError, ValueError):
            raise ModelFileError(path, "num_shape_components / num_expression_components must be integers") from None
        if n_shape < 1 or n_expr < 0 or n_shape > start or start + n_expr > total:
            raise ModelFileError(path, f"num_shape_components / num_expression_components do not fit {total} columns")
    return n_shape, start, n_expr


def model_data_from_arrays(
    arrays: dict, path: str | Path | None = None, family: str | Family | None = None, gender: str | None = None
) -> ModelData:
    """Validate a dict of arrays in the official layout and return a `ModelData`.

    `family`, when given, is what the caller expects; a file of another family is an error.
    Raises ModelFileError naming `path` (or '<arrays>'), the key and the expected shape.
    """
    where = path if path is not None else "<arrays>"
    expected = get_family(family) if isinstance(family, str) else family

    kintree = _array(arrays, "kintree_table", where, 2, dtype=np.int64)
    if kintree.shape[0] != 2:
        raise ModelFileError(where, f"key 'kintree_table' has shape {kintree.shape}, expected (2, J)")
    num_joints = kintree.shape[1]
    found = family_from_joint_count(num_joints)
    if found is None:
        raise ModelFileError(where, f"kinematic tree has {num_joints} joints, which matches no SMPL-family model")
    if expected is not None and found is not expected:
        raise ModelFileError(
            where,
            f"expected a {expected.display} model ({expected.num_joints} joints), "
            f"found {num_joints} joints (a {found.display} model)",
        )
    fam = found
    parents = kintree[0].copy()
    parents[0] = -1  # official files store 2**32-1 (or garbage) as the root's parent
    if not ((parents[1:] >= 0) & (parents[1:] < num_joints)).all():
        raise ModelFileError(where, "key 'kintree_table' has parent indices out of range")
    _check_tree(parents, where)

    v_template = _array(arrays, "v_template", where, 2)
    _expect_shape(where, "v_template", v_template, (None, 3))
    num_vertices = v_template.shape[0]
    if num_vertices < 3:
        raise ModelFileError(where, f"key 'v_template' has {num_vertices} vertices: not a mesh")

    faces = _array(arrays, "f", where, 2, dtype=np.int64)
    _expect_shape(where, "f", faces, (None, 3))
    if len(faces) == 0:
        raise ModelFileError(where, "key 'f' has no faces: not a mesh")
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise ModelFileError(where, f"key 'f' has vertex indices outside 0..{num_vertices - 1}")

    weights = _array(arrays, "weights", where, 2)
    _expect_shape(where, "weights", weights, (num_vertices, num_joints))
    row_sums = weights.sum(1)
    if np.abs(row_sums - 1.0).max() > 1e-3:
        worst = int(np.abs(row_sums - 1.0).argmax())
        raise ModelFileError(where, f"key 'weights': row {worst} sums to {row_sums[worst]:.4f}, expected 1")

    j_regressor = _array(arrays, "J_regressor", where, 2)
    _expect_shape(where, "J_regressor", j_regressor, (num_joints, num_vertices))

    shapedirs = _array(arrays, "shapedirs", where, 3)
    _expect_shape(where, "shapedirs", shapedirs, (num_vertices, 3, None))
    num_shape, expression_start, num_expression = _split_shape_space(fam, arrays, shapedirs.shape[2], where)

    posedirs = None
    if "posedirs" in arrays:
        posedirs = _array(arrays, "posedirs", where, 3)
        _expect_shape(where, "posedirs", posedirs, (num_vertices, 3, 9 * (num_joints - 1)))

    hand_components, hand_mean = {}, {}
    for part, suffix in fam.hand_parts:
        comp_key, mean_key = f"hands_components{suffix}", f"hands_mean{suffix}"
        if comp_key in arrays:
            hand_components[part] = _array(arrays, comp_key, where, 2)
            _expect_shape(where, comp_key, hand_components[part], (None, 45))
            if not 1 <= len(hand_components[part]) <= 45:
                raise ModelFileError(where, f"key {comp_key!r} has {len(hand_components[part])} components, expected 1..45")
        if mean_key in arrays:
            hand_mean[part] = _array(arrays, mean_key, where, 1)
            _expect_shape(where, mean_key, hand_mean[part], (45,))

    if gender is None:
        stored = arrays.get("gender")
        gender = str(np.asarray(stored)) if stored is not None else None
    if gender is None and path is not None:
        gender = gender_from_filename(Path(path).name)
    if gender is None:
        gender = "right" if fam.name == "mano" else "neutral"

    used = {"kintree_table", "v_template", "f", "weights", "J_regressor", "shapedirs", "posedirs", "gender"}
    used |= {f"hands_components{s}" for _, s in fam.hand_parts} | {f"hands_mean{s}" for _, s in fam.hand_parts}
    extras = {k: v for k, v in arrays.items() if k not in used and isinstance(v, np.ndarray)}
    _check_extras(extras, num_vertices, len(faces), where)

    return ModelData(
        family=fam,
        gender=gender,
        v_template=v_template,
        faces=faces,
        shapedirs=shapedirs,
        num_shape=num_shape,
        expression_start=expression_start,
        num_expression=num_expression,
        posedirs=posedirs,
        J_regressor=j_regressor,
        weights=weights,
        parents=parents,
        hand_components=hand_components,
        hand_mean=hand_mean,
        extras=extras,
        path=Path(path) if path is not None else None,
    )


def _check_tree(parents: np.ndarray, where) -> None:
    """The kinematic tree reaches the root from every joint (no cycles); one step per level."""
    node = np.arange(len(parents))
    for _ in range(len(parents)):
        node = np.where(node > 0, parents[np.maximum(node, 0)], node)
    if (node > 0).any():
        raise ModelFileError(where, f"key 'kintree_table' has a cycle (joint {int(np.argmax(node > 0))} never "
                                    "reaches the root)")


def _check_extras(extras: dict, num_vertices: int, num_faces: int, where) -> None:
    """Index arrays that keypoints and landmarks use must point at vertices / faces of this mesh."""
    for key, limit, what in (("lmk_faces_idx", num_faces, "faces"), ("contour_lmk_faces_idx", num_faces, "faces"),
                             ("keypoint_vertex_ids", num_vertices, "vertices"),
                             ("mirror_vertex_ids", num_vertices, "vertices")):
        if key in extras:
            try:
                ids = np.asarray(extras[key], dtype=np.int64)
            except (TypeError, ValueError):
                raise ModelFileError(where, f"key {key!r} is not an integer array") from None
            if ids.size and (ids.min() < 0 or ids.max() >= limit):
                raise ModelFileError(where, f"key {key!r} has indices outside 0..{limit - 1} (the model's {what})")
    for faces_key, bary_key in (("lmk_faces_idx", "lmk_bary_coords"), ("contour_lmk_faces_idx", "contour_lmk_bary_coords")):
        if faces_key in extras and bary_key in extras:
            bary = np.asarray(extras[bary_key])
            if bary.shape != (np.asarray(extras[faces_key]).size, 3) or not np.isfinite(bary.astype(float)).all():
                raise ModelFileError(where, f"key {bary_key!r} has shape {bary.shape}, expected "
                                            f"({np.asarray(extras[faces_key]).size}, 3) finite weights")


def read_model_file(path: str | Path, family: str | Family | None = None, gender: str | None = None) -> ModelData:
    """Read and validate an official-layout model file (`.npz` or chumpy `.pkl`).

    family: the expected model type ('smplx', 'smpl', ...); a file of another type is an error.
    gender: overrides the gender guessed from the file (stored key, or the file name).
    """
    path = Path(path)
    return model_data_from_arrays(_read_raw(path), path, family, gender)
