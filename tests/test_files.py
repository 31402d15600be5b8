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


@pytest.mark.parametrize("backend", ["zlib_ng", "zlib"])  # the dependency that inflates, and the fallback
def test_npz_members_read_as_numpy_reads_them(tmp_path, backend):
    import zlib

    from zlib_ng import zlib_ng

    from bodycapture.models import files
    from bodycapture.models.files import _npz_arrays

    assert files._inflate is zlib_ng  # installed with bodycapture, so it is what reads
    backend = {"zlib_ng": zlib_ng, "zlib": zlib}[backend]

    rng = np.random.default_rng(0)
    arrays = {"c_order": rng.standard_normal((5, 3, 4)).astype(np.float32), "fortran": np.asfortranarray(
        rng.standard_normal((6, 7))), "ints": np.arange(12, dtype=np.int64).reshape(3, 4), "empty": np.zeros((0, 3)),
        "scalar": np.array(3.5), "names": np.array(["pelvis", "left_hip"]), "meta": np.array({"a": 1}, dtype=object)}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        read = _npz_arrays(path, backend)
        assert set(read) == set(arrays) - {"meta"}  # pickled members are skipped, never unpickled
        for key, value in read.items():
            assert value.dtype == arrays[key].dtype and value.shape == arrays[key].shape
            np.testing.assert_array_equal(value, arrays[key])
            assert value.flags.writeable  # callers hand them to torch
    # one flipped byte inside the model's arrays: caught (zlib or the CRC), one line
    arrays = make_arrays("smplx")
    np.savez_compressed(tmp_path / "model.npz", **arrays)
    data = bytearray((tmp_path / "model.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "model_flipped.npz").write_bytes(bytes(data))
    one_line_error(tmp_path / "model_flipped.npz", "corrupt or truncated")


def test_a_member_that_inflates_past_its_stated_size_is_cut_off(tmp_path):
    # a hostile archive: the directory says 208 bytes, the stream inflates to 50 MB; reading stops at the
    # stated size (as zipfile does) instead of inflating it all, and the file is refused in one line
    import io
    import struct
    import zipfile
    import zlib

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(10))
    small = buf.getvalue()
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = packer.compress(small + b"\0" * 50_000_000) + packer.flush()
    member = zipfile.ZipInfo("v_template.npy")
    member.compress_type = zipfile.ZIP_DEFLATED
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, small)
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[0]
    data = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len
    head, directory = bytearray(data[:start]), bytearray(data[start + info.compress_size:])
    struct.pack_into("<I", head, info.header_offset + 18, len(stream))  # the compressed sizes only
    struct.pack_into("<I", directory, directory.find(b"PK\x01\x02") + 20, len(stream))
    struct.pack_into("<I", directory, directory.find(b"PK\x05\x06") + 16, len(head) + len(stream))
    path.write_bytes(bytes(head) + stream + bytes(directory))
    one_line_error(path, "v_template.npy: inflates past its size")


def test_reading_a_model_file_does_not_import_torch():
    # load_model reads the file in a thread while torch is imported (in a fresh process about 1 s): that
    # needs the file-reading modules to be importable without torch
    import subprocess
    import sys

    code = ("import sys, bodycapture.models.zoo, bodycapture.models.files as f\n"
            "data = f.read_model_file(bodycapture.models.zoo.bundled_model_path())\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "model = bodycapture.models.zoo.load_model(dtype='float64')\n"
            "print(model.v_template.dtype, data.v_template.shape[0] == model.num_vertices)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch.float64", "True"]


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
