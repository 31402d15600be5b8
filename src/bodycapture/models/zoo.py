"""Where body models come from: the bundled open model, a file, a folder laid out like the official
downloads, or the folders named by the environment variable BODYCAPTURE_MODELS.

Nothing is ever downloaded: the official SMPL-family files are licensed per user, so a missing file is
an error that says where we looked and where the files can be obtained.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelFileError, ModelNotFoundError
from .families import FAMILIES, Family, get_family
from .files import read_model_file

if TYPE_CHECKING:
    from .body_model import BodyModel

__all__ = ["load_model", "find_model_file", "bundled_model_path", "available_models", "ModelEntry", "ENV_VAR"]

ENV_VAR = "BODYCAPTURE_MODELS"
OPEN_MODEL_NAMES = ("open", "bodycapture", "default")
OPEN_MODEL_GENDERS = ("neutral", "male", "female")


def bundled_model_path(gender: str = "neutral") -> Path:
    """Path of the bundled open model of `gender` inside the installed package (may not exist)."""
    return Path(str(resources.files("bodycapture") / "data" / "models" / f"open_{gender.lower()}.npz"))


def _candidate_names(family: Family, gender: str, ext: str | None) -> list[str]:
    """File names the official downloads (and common repackagings) use for one model."""
    exts = [ext.lstrip(".")] if ext else [family.default_ext] + [e for e in ("npz", "pkl") if e != family.default_ext]
    g = gender.upper()
    names = [f"{family.file_prefix}_{g}.{e}" for e in exts]
    if family.name == "smpl":  # names of the original SMPL / SMPLify downloads
        short = {"neutral": "neutral", "male": "m", "female": "f"}[gender]
        names += [f"basicModel_{short}_lbs_10_207_0_v1.0.0.pkl", f"basicmodel_{short}_lbs_10_207_0_v1.1.0.pkl"]
    if family.name == "flame":  # FLAME 2019/2020 downloads
        names += {"neutral": ["generic_model.pkl"], "male": ["male_model.pkl"], "female": ["female_model.pkl"]}[gender]
    if family.name == "smplh":  # AMASS-style extended SMPL-H: <gender>/model.npz
        names += [f"{gender}/model.npz"]
    return names


def _normalise_gender(family: Family, gender: str) -> str:
    g = gender.lower()
    if family.name == "mano" and g == "neutral":
        return "right"
    if g not in family.genders:
        raise ValueError(f"{family.display} models come as {', '.join(family.genders)}; got gender={gender!r}")
    return g


def _search_folders(folder: Path, family: Family, gender: str, ext: str | None) -> list[Path]:
    """Every path we would accept for (family, gender) under `folder`, in order of preference."""
    names = _candidate_names(family, gender, ext)
    return [base / name for base in (folder / family.name, folder) for name in names]


def _env_folders() -> list[Path]:
    value = os.environ.get(ENV_VAR, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def find_model_file(
    name_or_path: str | os.PathLike | None = None,
    gender: str = "neutral",
    model_type: str | None = None,
    ext: str | None = None,
) -> Path:
    """Resolve what `load_model` was given to one model file.

    name_or_path: None / 'open' (the bundled open model); a family name ('smplx', 'smpl', 'smplh',
    'mano', 'flame') looked up in $BODYCAPTURE_MODELS; a model file; or a folder laid out like the
    official downloads (`smplx/SMPLX_NEUTRAL.npz`, `smpl/SMPL_MALE.pkl`, `mano/MANO_RIGHT.pkl`, ...).
    Raises ModelNotFoundError listing every place looked at.
    """
    return _resolve(name_or_path, gender, model_type, ext)[0]


def _resolve(name_or_path, gender: str, model_type: str | None, ext: str | None) -> tuple[Path, str | None]:
    """(model file, the gender it was looked up as; None where the file itself says)."""
    if name_or_path is None or str(name_or_path).lower() in OPEN_MODEL_NAMES:
        g = gender.lower()
        if g not in OPEN_MODEL_GENDERS:
            raise ValueError(f"the open model comes as {', '.join(OPEN_MODEL_GENDERS)}; got gender={gender!r}")
        path = bundled_model_path(g)
        if not path.is_file():
            raise ModelNotFoundError(
                f"the bundled open model is missing from this installation ({path}); reinstall bodycapture "
                "or pass an official model file or folder"
            )
        return path, None

    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path, None
    if path.is_dir():
        family = get_family(model_type) if model_type else FAMILIES.get(path.name.lower(), FAMILIES["smplx"])
        folders = [path.parent] if path.name.lower() == family.name else [path]
        where = "in the folder " + str(path)
    elif text.lower() in {"smpl", "smplh", "smpl+h", "smpl-h", "smplx", "smpl-x", "mano", "flame"}:
        family = get_family(text)
        folders = _env_folders()
        if not folders:
            raise ModelNotFoundError(
                f"no {family.display} model: set {ENV_VAR} to the folder holding the official files "
                f"(obtain them from {family.website}) or pass the file or folder itself"
            )
        where = f"in {ENV_VAR}"
    else:
        raise ModelNotFoundError(f"{text}: no such model file or folder")

    gender = _normalise_gender(family, gender)
    looked = [p for folder in folders for p in _search_folders(folder, family, gender, ext)]
    for candidate in looked:
        if candidate.is_file():
            return candidate, gender
    shown = ", ".join(str(p) for p in looked[:6]) + (" ..." if len(looked) > 6 else "")
    raise ModelNotFoundError(
        f"no {family.display} {gender} model {where}; looked for {shown}. "
        f"The official files are licensed separately: obtain them from {family.website}"
    )


def load_model(
    name_or_path: str | os.PathLike | None = None,
    gender: str = "neutral",
    model_type: str | None = None,
    ext: str | None = None,
    **options,
) -> BodyModel:
    """Load a body model; with no argument, the bundled open model.

    name_or_path: see `find_model_file`. gender: 'neutral', 'male' or 'female' ('right'/'left' for MANO).
    model_type: the expected family; a file of another family is an error. ext: 'npz' or 'pkl' to pick
    one format in a folder. Other keyword options go to `BodyModel` (num_betas, num_expression_coeffs,
    use_pca, num_pca_comps, flat_hand_mean, batch_size, dtype, device, ...); dtype may be a torch dtype or
    its name ('float64').
    """
    path, looked_up_gender = _resolve(name_or_path, gender, model_type, ext)
    # the file is read in a thread while torch is imported (in a fresh process: about 1 s, and reading
    # our open model about 0.3 s); its arrays are inflated in single zlib calls, which free the GIL
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(read_model_file, path, family=model_type, gender=looked_up_gender)
        import torch

        from .body_model import BodyModel

        data = reading.result()
    if isinstance(options.get("dtype"), str):  # "float32", "float64"
        options["dtype"] = _torch_dtype(torch, options["dtype"])
    return BodyModel(data, **options)


def _torch_dtype(torch, name: str):
    """The torch floating-point dtype called `name` ('float32', 'float64', ...), else a ValueError."""
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype {name!r} is not a torch floating-point type")
    return dtype


def check_model_file(path: str | os.PathLike, **options) -> str:
    """What `bodycapture models --check` runs: read and validate the file as loading does, build the model
    (with `options`, default SMPLify-X's component counts where the file has them) and pose it once with
    its keypoints, so that a file that passes can be posed and fitted. Returns the file's description;
    raises ModelFileError naming the file and the problem."""
    import torch

    from ..keypoints.regressors import KeypointRegressor

    from .body_model import BodyModel

    data = read_model_file(path)
    try:
        model = BodyModel(data, **options)
        with torch.no_grad():
            dtype = model.v_template.dtype
            params = {k: 0.1 * torch.ones(1, n, dtype=dtype) for k, n in model.parameter_sizes().items()}
            out = model(**params)
            points = KeypointRegressor(model)(out)
    except ModelFileError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever breaks posing it is a property of the file
        raise ModelFileError(path, f"cannot be posed ({type(err).__name__}: {err})") from None
    if not (torch.isfinite(out.vertices).all() and torch.isfinite(points).all()):
        raise ModelFileError(path, "posing it gives NaN or infinite vertices")
    return data.description


@dataclass
class ModelEntry:
    """One model file that `load_model` can find."""

    family: str
    gender: str
    path: Path
    licence: str


def available_models(folders: list[Path] | None = None) -> list[ModelEntry]:
    """Model files that can be loaded: the bundled open models, then official files in `folders`
    (default: the folders in $BODYCAPTURE_MODELS)."""
    found = [
        ModelEntry("open (SMPL-X layout)", g, bundled_model_path(g), "CC0-1.0 / Apache-2.0, see MODEL_LICENSE.md")
        for g in OPEN_MODEL_GENDERS
        if bundled_model_path(g).is_file()
    ]
    for folder in _env_folders() if folders is None else folders:
        for family in FAMILIES.values():
            for gender in family.genders:
                for candidate in _search_folders(Path(folder), family, gender, None):
                    if candidate.is_file():
                        found.append(ModelEntry(family.display, gender, candidate, "official, licensed separately"))
                        break
    return found
