"""Reading official-layout model files: .npz and chumpy .pkl give the same model; bad files give one line."""

import os
import pickle

import numpy as np
import pytest
import torch

from bodycapture.errors import ModelFileError
from bodycapture.models import BodyModel, read_model_file
from bodycapture.models.files import gender_from_filename

from conftest import FAMILIES, make_arrays, random_params, write_chumpy_pkl


def outputs(path, family, **options):
    model = BodyModel(read_model_file(path, family=family), dtype=torch.float64, **options)
    return model(**random_params(model, batch=2, seed=7))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("python2_style", [True, False])
def test_npz_and_chumpy_pickle_load_to_identical_models(tmp_path, family, python2_style):
    arrays = make_arrays(family)
    npz = tmp_path / "model.npz"
    np.savez(npz, **arrays)
    pkl = write_chumpy_pkl(tmp_path / "model.pkl", arrays, python2_style=python2_style)
    from_npz, from_pkl = outputs(npz, family), outputs(pkl, family)
    assert torch.equal(from_npz.vertices, from_pkl.vertices)
    assert torch.equal(from_npz.joints, from_pkl.joints)
    data = read_model_file(pkl)
    np.testing.assert_array_equal(data.J_regressor, arrays["J_regressor"])  # sparse densified exactly
    assert data.family.name == family


def test_new_scipy_module_names_and_compressed_npz(tmp_path):
    arrays = make_arrays("smpl")
    pkl = write_chumpy_pkl(tmp_path / "SMPL_MALE.pkl", arrays, sparse_module="scipy.sparse._csc")
    npz = tmp_path / "SMPL_MALE.npz"
    np.savez_compressed(npz, **arrays)
    assert torch.equal(outputs(pkl, "smpl").vertices, outputs(npz, "smpl").vertices)
    assert read_model_file(pkl).gender == "male"


def test_official_npz_metadata_objects_are_skipped(tmp_path):
    arrays = make_arrays("smplx")
    arrays["joint2num"] = np.array({"pelvis": 0}, dtype=object)  # official files pickle these dicts
    np.savez(tmp_path / "SMPLX_FEMALE.npz", **arrays)
    data = read_model_file(tmp_path / "SMPLX_FEMALE.npz")
    assert data.gender == "female" and "joint2num" not in data.extras
    assert data.extras["lmk_faces_idx"].shape == (51,)


def one_line_error(path, match, **kwargs):
    with pytest.raises(ModelFileError) as info:
        read_model_file(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert match in message, message
    return message


def test_corrupt_and_truncated_files(tmp_path):
    arrays = make_arrays("smplx")
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    data = good.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    one_line_error(tmp_path / "truncated.npz", "corrupt or truncated")
    (tmp_path / "garbage.npz").write_bytes(b"GARBAGE" + os.urandom(2000))
    one_line_error(tmp_path / "garbage.npz", "not a model file")
    (tmp_path / "zipgarbage.npz").write_bytes(b"PK\x03\x04" + os.urandom(2000))
    one_line_error(tmp_path / "zipgarbage.npz", "corrupt or truncated")

    pkl = write_chumpy_pkl(tmp_path / "good.pkl", arrays)
    raw = pkl.read_bytes()
    for cut in (len(raw) // 3, len(raw) - 5):
        (tmp_path / "truncated.pkl").write_bytes(raw[:cut])
        one_line_error(tmp_path / "truncated.pkl", "pickle")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    one_line_error(tmp_path / "list.pkl", "expected a pickled dict")
    one_line_error(tmp_path / "absent.npz", "no such file")


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch should-not-exist",))


def test_pickles_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"v_template": Exploit()}, protocol=2))
    one_line_error(tmp_path / "evil.pkl", "refusing to load")
    assert not (tmp_path / "should-not-exist").exists()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda a: a.pop("weights"), "missing key 'weights'"),
        (lambda a: a.update(v_template=a["v_template"][:, :2]), "key 'v_template' has shape (120, 2), expected (*, 3)"),
        (lambda a: a.update(weights=a["weights"] * 1.5), "key 'weights': row"),
        (lambda a: a.update(f=a["f"] + 1000), "key 'f' has vertex indices outside"),
        (lambda a: a.update(posedirs=a["posedirs"][:, :, :10]), "key 'posedirs' has shape"),
        (lambda a: a.update(J_regressor=a["J_regressor"][:, :5]), "key 'J_regressor' has shape"),
        (lambda a: a.update(kintree_table=a["kintree_table"][:, :30]), "30 joints, which matches no SMPL-family"),
        (lambda a: a["v_template"].__setitem__((0, 0), np.nan), "NaN"),
    ],
)
def test_invalid_contents_name_the_key(tmp_path, edit, match):
    arrays = make_arrays("smplx")
    edit(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    one_line_error(tmp_path / "bad.npz", match)


def test_wrong_family(tmp_path):
    np.savez(tmp_path / "SMPLX_NEUTRAL.npz", **make_arrays("smpl"))
    one_line_error(tmp_path / "SMPLX_NEUTRAL.npz", "expected a SMPL-X model (55 joints), found 24 joints (a SMPL model)",
                   family="smplx")


def test_gender_from_file_names():
    assert gender_from_filename("SMPLX_FEMALE.npz") == "female"
    assert gender_from_filename("SMPLX_MALE.npz") == "male"
    assert gender_from_filename("basicModel_f_lbs_10_207_0_v1.0.0.pkl") == "female"
    assert gender_from_filename("basicmodel_m_lbs_10_207_0_v1.1.0.pkl") == "male"
    assert gender_from_filename("basicModel_neutral_lbs_10_207_0_v1.0.0.pkl") == "neutral"
    assert gender_from_filename("generic_model.pkl") == "neutral"
    assert gender_from_filename("MANO_LEFT.pkl") == "left"
    assert gender_from_filename("model.npz") is None
