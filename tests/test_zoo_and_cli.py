"""Finding model files (official folder layouts, BODYCAPTURE_MODELS) and the `bodycapture` command."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.cli import main
from bodycapture.errors import ModelNotFoundError
from bodycapture.models import zoo

from conftest import make_arrays, write_chumpy_pkl


@pytest.fixture
def official_folder(tmp_path):
    """A folder laid out like the official downloads, with small random models."""
    root = tmp_path / "models"
    for sub in ("smplx", "smpl", "mano"):
        (root / sub).mkdir(parents=True)
    for i, gender in enumerate(("NEUTRAL", "MALE", "FEMALE")):
        np.savez(root / "smplx" / f"SMPLX_{gender}.npz", **make_arrays("smplx", seed=i))
        write_chumpy_pkl(root / "smplx" / f"SMPLX_{gender}.pkl", make_arrays("smplx", seed=10 + i))
    write_chumpy_pkl(root / "smpl" / "SMPL_MALE.pkl", make_arrays("smpl", seed=3))
    write_chumpy_pkl(root / "mano" / "MANO_RIGHT.pkl", make_arrays("mano", seed=4))
    return root


def test_load_from_official_folder_layout(official_folder):
    female = zoo.load_model(official_folder, gender="female", dtype=torch.float64)
    assert female.family.name == "smplx" and female.gender == "female"
    expected = make_arrays("smplx", seed=2)["v_template"]
    np.testing.assert_allclose(female.v_template.numpy(), expected)
    # the pickle of the same gender when asked for explicitly
    pkl = zoo.load_model(official_folder, gender="female", ext="pkl", dtype=torch.float64)
    np.testing.assert_allclose(pkl.v_template.numpy(), make_arrays("smplx", seed=12)["v_template"])
    # the family sub-folder itself, and other families
    assert zoo.load_model(official_folder / "smplx").gender == "neutral"
    assert zoo.load_model(official_folder, model_type="smpl", gender="male").family.name == "smpl"
    assert zoo.load_model(official_folder, model_type="mano").gender == "right"
    # a file directly
    assert zoo.load_model(official_folder / "smpl" / "SMPL_MALE.pkl").gender == "male"


def test_environment_variable(official_folder, monkeypatch, tmp_path):
    monkeypatch.setenv(zoo.ENV_VAR, f"{tmp_path / 'empty'}:{official_folder}")
    model = bodycapture.load_model("smplx", gender="male", num_betas=5)
    assert model.gender == "male" and model.num_betas == 5
    monkeypatch.delenv(zoo.ENV_VAR)
    with pytest.raises(ModelNotFoundError, match=r"set BODYCAPTURE_MODELS .*smpl-x\.is\.tue\.mpg\.de"):
        bodycapture.load_model("smplx")


def test_missing_files_say_where_we_looked(official_folder):
    with pytest.raises(ModelNotFoundError) as info:
        zoo.load_model(official_folder, model_type="flame")
    message = str(info.value)
    assert "\n" not in message
    assert str(official_folder / "flame" / "FLAME_NEUTRAL.pkl") in message
    assert "flame.is.tue.mpg.de" in message
    with pytest.raises(ModelNotFoundError, match="no such model file or folder"):
        zoo.load_model(official_folder / "nothing.npz")
    with pytest.raises(ValueError, match="MANO models come as right, left"):
        zoo.load_model(official_folder, model_type="mano", gender="female")


def test_wrong_family_in_folder(tmp_path):
    (tmp_path / "smplx").mkdir()
    np.savez(tmp_path / "smplx" / "SMPLX_NEUTRAL.npz", **make_arrays("smpl"))
    with pytest.raises(bodycapture.ModelFileError, match="expected a SMPL-X model"):
        zoo.load_model(tmp_path, model_type="smplx")


def test_dtype_by_name():
    assert zoo.load_model(dtype="float64").v_template.dtype == torch.float64
    with pytest.raises(ValueError, match="'int64' is not a torch floating-point type"):
        zoo.load_model(dtype="int64")


def test_missing_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "bundled_model_path", lambda gender="neutral": tmp_path / f"open_{gender}.npz")
    with pytest.raises(ModelNotFoundError, match="bundled open model is missing"):
        zoo.load_model()
    with pytest.raises(ValueError, match="open model comes as neutral, male, female"):
        zoo.load_model("open", gender="right")


def test_cli_version_and_models(official_folder, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bodycapture {bodycapture.__version__}"

    assert main(["models", "--folder", str(official_folder), "--check"]) == 0
    out = capsys.readouterr().out
    assert out.count("official, licensed separately") == 5  # 3 SMPL-X (npz preferred over pkl), SMPL, MANO
    assert "SMPL-X" in out and "MANO" in out and "[ok:" in out

    broken = tmp_path / "broken" / "smpl"
    broken.mkdir(parents=True)
    (broken / "SMPL_NEUTRAL.pkl").write_bytes(b"\x80\x02garbage")
    assert main(["models", "--folder", str(broken.parent), "--check"]) == 1
    assert "[invalid:" in capsys.readouterr().out


def test_console_script_is_installed():
    exe = shutil.which("bodycapture", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe, "the bodycapture console script is not installed next to this Python"
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("bodycapture ")
