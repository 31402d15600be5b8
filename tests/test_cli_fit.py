"""`bodycapture fit` end to end: a photo, a real OpenPose file, every output loads back, bad input."""

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from bodycapture.cli import main
from bodycapture.io.mesh import read_obj_vertex_count

pytestmark = pytest.mark.detector
DATA = Path(__file__).resolve().parent / "data"
PHOTO = DATA / "images" / "coco_623.jpg"
LSP = DATA / "openpose" / "lsp_im1010.jpg"
LSP_JSON = DATA / "openpose" / "lsp_im1010_keypoints.json"
V_OPEN = 13492


def check_outputs(folder: Path, people: int = 1, formats=("obj",)):
    params = np.load(folder / "params.npz")
    assert params["betas"].shape == (people, 10) and params["body_pose"].shape == (people, 63)
    assert params["left_hand_pose"].shape == (people, 45) and params["expression"].shape == (people, 10)
    assert params["camera_translation"].shape == (people, 3) and np.isfinite(params["loss"]).all()
    result = pickle.loads((folder / "result.pkl").read_bytes())
    assert result["camera_rotation"].shape == (1, 3, 3) and result["betas"].shape == (1, 10)
    assert result["global_orient"].shape == (1, 3) and "transl" not in result
    if "obj" in formats:
        assert read_obj_vertex_count(folder / "mesh.obj") == V_OPEN
    if "ply" in formats:
        header = (folder / "mesh.ply").read_bytes()[:300].decode("latin1")
        assert f"element vertex {V_OPEN}" in header
    if "glb" in formats:
        raw = (folder / "mesh.glb").read_bytes()
        magic, version, total = struct.unpack("<4sII", raw[:12])
        assert magic == b"glTF" and version == 2 and total == len(raw)
        length = struct.unpack("<I", raw[12:16])[0]
        gltf = json.loads(raw[20 : 20 + length])
        assert gltf["accessors"][0]["count"] == V_OPEN
    kp = json.loads((folder / "keypoints.json").read_text())
    assert len(kp["people"]) == people
    from PIL import Image

    with Image.open(folder / "overlay.png") as img:
        assert img.size[0] > 100


def test_fit_a_photo_end_to_end(tmp_path, capsys):
    assert main(["fit", str(PHOTO), "--out", str(tmp_path), "--format", "obj,ply,glb"]) == 0
    check_outputs(tmp_path / "coco_623", formats=("obj", "ply", "glb"))
    params = np.load(tmp_path / "coco_623" / "params.npz")  # the collision stages report what is left
    assert params["stage5_collisions"].shape == (1,) and params["stage5_collision"].shape == (1,)
    assert "stage4_collisions" not in params and "stage4_collision" not in params  # last stage only
    # an existing result is kept unless --overwrite: a note, not a failure
    capsys.readouterr()
    assert main(["fit", str(PHOTO), "--out", str(tmp_path)]) == 0
    assert "exists, skipped (use --overwrite" in capsys.readouterr().err
    assert main(["fit", str(PHOTO), "--out", str(tmp_path), "--overwrite"]) == 0
    assert not list(tmp_path.glob(".*"))  # no staging leftovers


def test_fit_a_real_openpose_file(tmp_path):
    assert main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--out", str(tmp_path)]) == 0
    check_outputs(tmp_path / "lsp_im1010")


def test_bad_inputs_give_one_line_and_the_rest_still_runs(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    from PIL import Image

    Image.new("RGB", (320, 240), (80, 80, 80)).save(photos / "empty.png")
    (photos / "lsp_im1010.jpg").write_bytes(LSP.read_bytes())
    kps = tmp_path / "kps"
    kps.mkdir()
    (kps / "lsp_im1010_keypoints.json").write_bytes(LSP_JSON.read_bytes())
    big = json.loads(LSP_JSON.read_text())
    big["people"][0]["pose_keypoints_2d"][0] = 5000.0  # a point far outside a 320x240 image
    (kps / "empty_keypoints.json").write_text(json.dumps(big))
    assert main(["fit", str(photos), "--keypoints", str(kps), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr()
    lines = [line for line in err.err.splitlines() if line.startswith("bodycapture: error:")]
    assert len(lines) == 2
    assert any("broken.jpg" in line and "not a readable image" in line for line in lines)
    assert any("outside the 320x240 image" in line for line in lines)
    assert "3 images" in err.out and "1 fitted" in err.out and "2 failed" in err.out
    check_outputs(tmp_path / "out" / "lsp_im1010")
    assert not (tmp_path / "out" / "broken").exists()

    assert main(["fit", str(photos / "empty.png"), "--out", str(tmp_path / "o2")]) == 1  # detector: nobody
    assert "no person found" in capsys.readouterr().err


def test_model_folder_without_the_gender(tmp_path, capsys):
    (tmp_path / "smplx").mkdir()
    assert main(["fit", str(LSP), "--keypoints", str(LSP_JSON), "--model", str(tmp_path), "--gender", "female",
                 "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SMPLX_FEMALE" in err and "smpl-x.is.tue.mpg.de" in err


def test_show_config(capsys):
    assert main(["fit", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "404" in out and "L-BFGS" in out


def test_no_collision_flag(capsys):
    assert main(["fit", "--show-config"]) == 0
    assert "interpenetration: on for models with hands" in capsys.readouterr().out
    assert main(["fit", "--show-config", "--no-collision"]) == 0
    assert "interpenetration: off" in capsys.readouterr().out
