"""Bad input and faults on the write path: one line naming the input, exit status 1, no traceback, no
visible partial output, and the good items of the same run still done (docs/reliability.md
lists what is covered)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bodycapture.cli import main
from bodycapture.io.results import clean_stale_staging

DATA = Path(__file__).resolve().parent / "data"
LSP = DATA / "openpose" / "lsp_im1010.jpg"
LSP_JSON = DATA / "openpose" / "lsp_im1010_keypoints.json"


def _one_error_line(err: str, *needles: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("bodycapture: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("focal", ["nan", "inf", "0", "-5"])
def test_bad_focal_is_refused(tmp_path, capsys, focal):
    code = main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--out", str(tmp_path / "out"), "--focal", focal])
    assert code == 1
    _one_error_line(capsys.readouterr().err, "focal length")
    assert _visible(tmp_path / "out") == []


@pytest.mark.parametrize("value", ["NaN", "null", "Infinity", '"x"', "[1, 2]"])
def test_bad_keypoint_values_give_one_line(tmp_path, capsys, value):
    text = LSP_JSON.read_text()
    data = json.loads(text)
    body = data["people"][0]["pose_keypoints_2d"]
    raw = json.dumps(data).replace(json.dumps(body), "[" + ", ".join([value] + [str(v) for v in body[1:]]) + "]", 1)
    bad = tmp_path / "lsp_im1010_keypoints.json"
    bad.write_text(raw)
    assert main(["fit", str(LSP), "--keypoints", str(bad), "--out", str(tmp_path / "out")]) == 1
    _one_error_line(capsys.readouterr().err, str(bad), "pose_keypoints_2d")
    assert _visible(tmp_path / "out") == []


@pytest.mark.parametrize("shift", [(-5000, 0), (0, -5000), (5000, 0)])
def test_keypoints_outside_any_edge_are_refused(tmp_path, capsys, shift):
    data = json.loads(LSP_JSON.read_text())
    body = data["people"][0]["pose_keypoints_2d"]
    body[0] += shift[0]
    body[1] += shift[1]
    bad = tmp_path / "lsp_im1010_keypoints.json"
    bad.write_text(json.dumps(data))
    assert main(["fit", str(LSP), "--keypoints", str(bad), "--out", str(tmp_path / "out")]) == 1
    _one_error_line(capsys.readouterr().err, "outside the")


def test_out_that_is_a_file_is_refused_before_fitting(tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    assert main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--out", str(tmp_path / "out")]) == 1
    _one_error_line(capsys.readouterr().err, "not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_is_refused_before_fitting(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--out", str(out)]) == 1
        _one_error_line(capsys.readouterr().err, "cannot write results here")
    finally:
        out.chmod(0o700)


def test_cuda_without_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 1
    _one_error_line(capsys.readouterr().err, "CUDA is not available")


@pytest.mark.parametrize("argv", [["fit", str(LSP), "--batch-images", "0"], ["fit", str(LSP), "--batch-images", "-1"],
                                  ["fit", str(LSP), "--max-people", "0"], ["fit", str(LSP), "--min-height", "nan"],
                                  ["eval", "--n", "0"], ["sample-poses", "--n", "0", "--out", "x"]])
def test_bad_counts_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_and_a_traceback_with_vv(tmp_path, capsys, monkeypatch):
    import bodycapture.pipeline as pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "capture", broken)
    assert main(["fit", str(LSP), "--out", str(tmp_path)]) == 1
    line = _one_error_line(capsys.readouterr().err, "unexpected ZeroDivisionError", "-vv")
    assert line.count("\n") == 0
    with pytest.raises(ZeroDivisionError):
        main(["-vv", "fit", str(LSP), "--out", str(tmp_path)])


def test_a_killed_overwrite_keeps_the_old_result(tmp_path):
    """Killed between moving the old result aside and moving the new one in: the next run puts it back."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = dead.stdout.strip()
    old = tmp_path / f".photo.old-{pid}-0123abcd"
    old.mkdir()
    (old / "params.npz").write_text("old result")
    (tmp_path / f".photo.partial-{pid}-4567cdef").mkdir()  # the new one, half written
    assert clean_stale_staging(tmp_path) == 2
    assert _visible(tmp_path) == ["photo"] and (tmp_path / "photo" / "params.npz").read_text() == "old result"


@pytest.mark.parametrize("text, needle", [("rho: .nan\n", "rho"), ("body_pose_prior_weights: [1.0e+30, 1, 1, 1, 1]\n", "body_pose"),
                                          ("maxiters: many\n", "wrong type"), ("shape_weights: 5\n", "shape_weights"),
                                          ("focal_length: [1, 2]\n", "wrong type"), ("- a list\n", "mapping")])
def test_bad_config_values_give_one_line(tmp_path, capsys, text, needle):
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(text)
    code = main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--config", str(cfg), "--out", str(tmp_path / "out")])
    assert code == 1
    _one_error_line(capsys.readouterr().err, str(cfg), needle)
    assert _visible(tmp_path / "out") == []


def test_people_without_keypoints_are_not_fitted(tmp_path, capsys):
    data = json.loads(LSP_JSON.read_text())
    person = data["people"][0]
    for key in ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d"):
        values = person.get(key) or []
        person[key] = [0.0 if i % 3 == 2 else v for i, v in enumerate(values)]  # every confidence zero
    bad = tmp_path / "lsp_im1010_keypoints.json"
    bad.write_text(json.dumps(data))
    assert main(["fit", str(LSP), "--keypoints", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "no person found" in capsys.readouterr().err
    assert _visible(tmp_path / "out") == []


def test_the_fit_api_refuses_what_cannot_be_fitted():
    import numpy as np

    import bodycapture
    from bodycapture.errors import BodyCaptureError

    points = np.zeros((1, 135, 3))
    with pytest.raises(BodyCaptureError, match="detected body keypoints"):
        bodycapture.fit(points, image_size=(480, 640))
    points[0, :25] = [100.0, 100.0, 0.9]
    points[0, 3, 0] = np.nan
    with pytest.raises(BodyCaptureError, match="NaN"):
        bodycapture.fit(points, image_size=(480, 640))
    points[0, 3, 0] = 120.0
    with pytest.raises(BodyCaptureError, match="image sizes"):
        bodycapture.fit(points, image_size=(0, 0))


def test_two_runs_on_one_output_end_with_one_whole_result(tmp_path):
    """Two `bodycapture fit` processes on the same photo and --out at the same time: one writes the result,
    the other skips it; the folder holds one complete, unmixed result and no leftovers."""
    cfg = tmp_path / "quick.yaml"
    cfg.write_text("maxiters: 3\n")  # a short fit: this tests the write path, not the fit
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "bodycapture.cli", "fit", str(LSP), "--keypoints", str(LSP_JSON), "--out", str(out),
            "--config", str(cfg), "--no-collision", "--threads", "1"]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    summaries = [stdout for stdout, _ in results]
    assert sorted("1 fitted" in s for s in summaries) == [False, True], summaries  # one wrote, one skipped
    assert sum("skipped" in stderr for _, stderr in results) == 1
    assert _visible(out) == ["index.html", "lsp_im1010"]  # no staging folders, no locks
    folder = out / "lsp_im1010"
    assert sorted(p.name for p in folder.iterdir()) == ["keypoints.json", "mesh.obj", "overlay.png", "params.npz",
                                                        "report.html", "result.pkl"]
    import numpy as np

    assert np.load(folder / "params.npz")["betas"].shape == (1, 10)


# ---------------------------------------------------------------------------------------------------
# model files: what passes `models --check` can be posed and fitted; the rest is one line


def _model_file(tmp_path, name="SMPLX_NEUTRAL.npz", **changes):
    import numpy as np

    from bodycapture.models.random_model import random_model_arrays

    arrays = random_model_arrays("smplx", num_vertices=200, num_shape=300, num_expression=10)
    arrays.update(changes)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path, arrays


def test_model_file_faults_are_one_line(tmp_path):
    import numpy as np

    from bodycapture.errors import ModelFileError
    from bodycapture.models.zoo import check_model_file

    good, arrays = _model_file(tmp_path)
    assert "SMPL-X" in check_model_file(good)
    kintree = arrays["kintree_table"].copy()
    kintree[0, 1], kintree[0, 3] = 3, 1  # joints 1 and 3 each other's parent: a cycle
    cases = {
        "cycle": dict(kintree_table=kintree),
        "no vertices": dict(v_template=np.zeros((0, 3)), f=np.zeros((0, 3), np.int64),
                            weights=np.zeros((0, 55)), J_regressor=np.zeros((55, 0)),
                            shapedirs=np.zeros((0, 3, 310)), posedirs=None),
        "text count": dict(num_shape_components=np.array("ten"), num_expression_components=np.array(10)),
        "negative count": dict(num_shape_components=np.array(-3), num_expression_components=np.array(10)),
        "landmark faces": dict(lmk_faces_idx=np.array([0, 10**6]), lmk_bary_coords=np.full((2, 3), 1 / 3)),
        "keypoint vertices": dict(keypoint_names=np.array(["nose"]), keypoint_vertex_ids=np.array([-4])),
        "hand PCA of 60 rows": dict(hands_componentsl=np.zeros((60, 45))),
    }
    messages = {"cycle": "cycle", "no vertices": "not a mesh", "text count": "integers",
                "negative count": "do not fit", "landmark faces": "lmk_faces_idx", "keypoint vertices": "keypoint_vertex_ids",
                "hand PCA of 60 rows": "components"}
    for name, change in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        path, _ = _model_file(folder, **change)
        with pytest.raises(ModelFileError, match=messages[name]) as err:
            check_model_file(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_six_component_hand_pca_asked_for_twelve(tmp_path, capsys):
    import numpy as np

    path, arrays = _model_file(tmp_path, hands_componentsl=np.eye(45)[:6], hands_componentsr=np.eye(45)[:6])
    code = main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--model", str(path), "--out", str(tmp_path / "o")])
    assert code == 1  # the CLI asks for SMPLify-X's 12 components
    _one_error_line(capsys.readouterr().err, str(path), "6 components, 12 asked for")


def test_an_npz_header_claiming_terabytes_is_refused_before_reading(tmp_path):
    import io
    import zipfile

    import numpy as np

    from bodycapture.errors import ModelFileError
    from bodycapture.models.files import read_model_file

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (3_000_000_000_000,)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("v_template.npy", header.getvalue() + b"\0" * 64)  # 24 TB claimed, 64 bytes given
    with pytest.raises(ModelFileError, match=r"'v_template' claims 22351\.7 GiB"):
        read_model_file(path)


def test_a_mano_or_flame_model_cannot_fit_a_body(tmp_path, capsys):
    import numpy as np

    from bodycapture.models.random_model import random_model_arrays

    path = tmp_path / "MANO_RIGHT.npz"
    np.savez(path, **random_model_arrays("mano", num_vertices=100))
    code = main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--model", str(path), "--out", str(tmp_path / "o")])
    assert code == 1
    _one_error_line(capsys.readouterr().err, "has no body")


def test_a_decompression_bomb_is_one_line_and_the_rest_runs(tmp_path, capsys):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("1", (20000, 20000)).save(photos / "bomb.png")  # 400 megapixels in 48 KB
    (photos / "lsp_im1010.jpg").write_bytes(LSP.read_bytes())
    cfg = tmp_path / "quick.yaml"
    cfg.write_text("maxiters: 3\n")
    code = main(["fit", str(photos), "--keypoints", str(LSP_JSON.parent), "--config", str(cfg), "--no-collision",
                 "--out", str(tmp_path / "out")])
    assert code == 1
    captured = capsys.readouterr()
    _one_error_line(captured.err, "bomb.png", "refused")
    assert "1 fitted" in captured.out and _visible(tmp_path / "out") == ["index.html", "lsp_im1010"]


def test_people_per_image_are_capped(tmp_path, caplog):
    """A keypoint file with many people fits only the first --max-people (it used to run without bound)."""
    data = json.loads(LSP_JSON.read_text())
    data["people"] = data["people"] * 50
    many = tmp_path / "lsp_im1010_keypoints.json"
    many.write_text(json.dumps(data))
    cfg = tmp_path / "quick.yaml"
    cfg.write_text("maxiters: 2\n")
    assert main(["fit", str(LSP), "--keypoints", str(many), "--max-people", "3", "--config", str(cfg),
                 "--no-collision", "--out", str(tmp_path / "out")]) == 0
    assert "50 people in the keypoint file, fitting the first 3" in caplog.text
    import numpy as np

    assert np.load(tmp_path / "out" / "lsp_im1010" / "params.npz")["betas"].shape == (3, 10)


@pytest.mark.detector
@pytest.mark.parametrize("after", [0.3, 3.0])  # during the imports, and during detection / model loading / fitting
def test_ctrl_c_is_one_line_and_leaves_nothing(tmp_path, after):
    import signal
    import time

    out = tmp_path / "out"
    before = set(_detect_workers())  # other runs on this machine (a user's, another test run) are not ours
    # a test run started in the background (`pytest &`) ignores SIGINT, and a child inherits that: restore the
    # default, as in an interactive shell, so that Python installs its Ctrl-C handler
    run = subprocess.Popen([sys.executable, "-m", "bodycapture.cli", "fit", str(DATA / "images" / "coco_338.jpg"),
                            "--out", str(out), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(after)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    # 130, or (rarely, seen once in CI) killed by SIGINT right after the line: both tell the shell "interrupted"
    assert run.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines()[-1] == "bodycapture: interrupted" and "Traceback" not in err
    assert not out.exists() or _visible(out) == []
    time.sleep(0.5)
    assert set(_detect_workers()) - before == set()  # the detection process went with it


def _detect_workers() -> list[int]:
    """Running `python -m bodycapture.detect_worker` processes (from /proc: Linux)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if b"bodycapture.detect_worker" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_tiny_pickle_claiming_a_huge_sparse_matrix_is_refused(tmp_path, monkeypatch):
    """Official pickles store J_regressor as a scipy sparse matrix; a few bytes can claim any shape, and
    densifying it used to allocate before anything was checked."""
    import conftest
    import numpy as np

    from bodycapture.errors import ModelFileError
    from bodycapture.models.files import read_model_file
    from bodycapture.models.random_model import random_model_arrays

    def huge_state(dense):
        return {"_shape": (2_000_000, 2_000_000), "data": np.ones(1), "indices": np.zeros(1, np.int32),
                "indptr": np.array([0, 1], np.int32), "maxprint": 50}

    monkeypatch.setattr(conftest, "dense_to_csc_state", huge_state)
    path = conftest.write_chumpy_pkl(tmp_path / "SMPL_NEUTRAL.pkl", random_model_arrays("smpl", num_vertices=60))
    with pytest.raises(ModelFileError, match="J_regressor.*29802.3 GiB"):
        read_model_file(path)


@pytest.mark.parametrize("value", ["thirty-five", 0, 10**9])
def test_odd_exif_focal_lengths_count_as_absent(tmp_path, value):
    """EXIF FocalLengthIn35mmFilm as text, zero or absurd: the image diagonal, never NaN or an error."""
    from PIL import Image

    from bodycapture.fitting.camera import choose_focal

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = value
    Image.new("RGB", (400, 300)).save(tmp_path / "odd.jpg", exif=exif)
    focal, source = choose_focal(300, 400, tmp_path / "odd.jpg")
    assert source == "diagonal" and focal == pytest.approx(500.0)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_disk_that_fills_up_mid_write_is_one_line_and_leaves_the_old_result(tmp_path, capsys, monkeypatch, overwrite):
    """ENOSPC while the meshes are written (half a file on disk, then the error): one line naming the result,
    exit 1, no partial folder; with --overwrite the previous result is still there, whole."""
    import errno

    import bodycapture.io.mesh as mesh

    def full_disk(path, data):
        Path(str(path) + ".tmp").write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    out = tmp_path / "out"
    if overwrite:
        (out / "lsp_im1010").mkdir(parents=True)
        (out / "lsp_im1010" / "params.npz").write_text("old result")
    cfg = tmp_path / "short.yaml"
    cfg.write_text("maxiters: 2\n")
    monkeypatch.setattr(mesh, "write_bytes_atomic", full_disk)
    argv = ["fit", str(LSP), "--keypoints", str(LSP_JSON), "--out", str(out), "--config", str(cfg), "-q"]
    assert main(argv + (["--overwrite"] if overwrite else [])) == 1
    _one_error_line(capsys.readouterr().err, str(out / "lsp_im1010"), "No space left")
    if overwrite:
        assert _visible(out) == ["lsp_im1010"] and (out / "lsp_im1010" / "params.npz").read_text() == "old result"
    else:
        assert _visible(out) == []


def test_a_100_byte_pickle_asking_for_gigabytes_is_refused_without_allocating(tmp_path):
    """`bytes(2_000_000_000)` takes a few bytes of pickle (protocol 2 may call `bytes` for an empty array's
    data); it used to allocate 2 GB before the model was validated."""
    import io
    import pickle
    import struct

    from bodycapture.errors import ModelFileError
    from bodycapture.models.files import read_model_file

    data = (b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01c__builtin__\nbytes\nq\x02J" + struct.pack("<i", 2_000_000_000)
            + b"\x85q\x03Rq\x04s.")
    assert len(data) < 100
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(data)
    calls = []

    class Peek(pickle.Unpickler):  # what a plain unpickler would call, without calling it
        def find_class(self, module, name):
            return lambda *args: calls.append((module, name, args))

    Peek(io.BytesIO(data)).load()
    assert calls == [("__builtin__", "bytes", (2_000_000_000,))]
    with pytest.raises(ModelFileError, match="refusing bytes"):
        read_model_file(path)
