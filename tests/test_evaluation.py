"""Metrics, the synthetic generator, and `bodycapture eval`."""

import json
import math

import numpy as np
import torch

import bodycapture
from bodycapture.cli import main
from bodycapture.evaluation.metrics import mpjpe, pa_mpjpe, pck, procrustes_align, v2v
from bodycapture.evaluation.synthetic import generate
from bodycapture.io.mesh import read_ply_vertices, write_ply
from bodycapture.io.raster import rasterize
from bodycapture.keypoints import KeypointRegressor
from bodycapture.models.lbs import axis_angle_to_matrix


def random_similarity(b, g):
    rot = axis_angle_to_matrix(torch.randn(b, 3, generator=g, dtype=torch.float64))
    scale = 0.5 + torch.rand(b, 1, 1, generator=g, dtype=torch.float64)
    shift = torch.randn(b, 1, 3, generator=g, dtype=torch.float64)
    return rot, scale, shift


def test_procrustes_recovers_a_similarity_exactly():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 30, 3, generator=g, dtype=torch.float64)
    rot, scale, shift = random_similarity(4, g)
    pred = scale * target @ rot.transpose(1, 2) + shift
    torch.testing.assert_close(procrustes_align(pred, target), target, atol=1e-10, rtol=0)
    assert v2v(pred, target).max() < 1e-10 and v2v(target, target, align=False).max() == 0


def test_pa_mpjpe_is_invariant_to_similarity_of_the_prediction():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(3, 22, 3, generator=g, dtype=torch.float64)
    pred = target + 0.05 * torch.randn(3, 22, 3, generator=g, dtype=torch.float64)
    rot, scale, shift = random_similarity(3, g)
    moved = scale * pred @ rot.transpose(1, 2) + shift
    torch.testing.assert_close(pa_mpjpe(moved, target), pa_mpjpe(pred, target), atol=1e-10, rtol=0)
    assert (pa_mpjpe(pred, target) <= mpjpe(pred, target) + 1e-12).all()
    mask = torch.ones(3, 22, dtype=torch.bool)
    mask[:, :5] = False
    assert torch.isfinite(pa_mpjpe(pred, target, mask)).all()
    assert pck(pred[..., :2], target[..., :2], mask, 1.0).min() == 1.0


def test_generator_is_deterministic_consistent_and_occludes_correctly():
    model = bodycapture.load_model(dtype=torch.float64)
    a, b = generate(model, 8, seed=3), generate(model, 8, seed=3)
    assert all(np.array_equal(x.points, y.points) for x, y in zip(a.keypoints, b.keypoints))
    assert not np.array_equal(a.keypoints[0].points, generate(model, 8, seed=4).keypoints[0].points)
    # the true 2D keypoints are the camera projection of the posed model's keypoints
    with torch.no_grad():
        kp3 = KeypointRegressor(model)(model(**{k: v for k, v in a.params.items()}))
    h, w = a.image_size
    proj = kp3[..., :2] / kp3[..., 2:] * a.focal[:, None, None] + torch.tensor([w / 2, h / 2], dtype=torch.float64)
    torch.testing.assert_close(proj, a.keypoints2d, atol=1e-6, rtol=0)
    # detections are near the truth where seen
    pts = np.concatenate([k.points for k in a.keypoints])
    seen = pts[..., 2] > 0
    err = np.linalg.norm(pts[..., :2] - a.keypoints2d.numpy(), axis=-1)[seen & ~a.hidden.numpy()]
    assert np.median(err) < 6.0
    # the person turning away hides the face; hidden points are behind the mesh in a z-buffer
    away = a.pose_names.index("turning away")
    assert a.hidden[away, 67:118].float().mean() > 0.8
    verts = a.vertices[away].numpy()
    pix = verts[:, :2] / verts[:, 2:] * a.focal[away].item() + [w / 2, h / 2]
    zbuf = rasterize(pix, verts[:, 2], model.faces, (h, w)).depth
    for k in np.nonzero(a.hidden[away].numpy())[0]:
        x, y = a.keypoints2d[away, k].numpy().astype(int)
        assert zbuf[y, x] < kp3[away, k, 2].item() - 0.01, k


def test_ply_round_trip(tmp_path):
    verts = np.random.default_rng(0).normal(size=(50, 3))
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    write_ply(tmp_path / "m.ply", verts, faces)
    np.testing.assert_allclose(read_ply_vertices(tmp_path / "m.ply"), verts, atol=1e-6)
    (tmp_path / "a.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                                    "property float z\nend_header\n1 2 3\n4 5 6\n")
    np.testing.assert_allclose(read_ply_vertices(tmp_path / "a.ply"), [[1, 2, 3], [4, 5, 6]])


def test_eval_command_end_to_end(tmp_path, capsys):
    assert main(["eval", "--n", "3", "--json", str(tmp_path / "e.json")]) == 0
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["n"] == 3 and len(data["per_person"]["pa_v2v_all"]) == 3
    for key in ("pa_v2v_all", "pa_v2v_body", "pa_v2v_hands", "pa_v2v_face", "pa_mpjpe_body", "px_body"):
        assert math.isfinite(data["mean"][key]) and data["mean"][key] >= 0
    pairs = data["per_person"]["intersecting_pairs"]
    assert len(pairs) == 3 and all(p >= 0 and p == int(p) for p in pairs)
    assert "PA-v2v" in capsys.readouterr().out


def test_intersecting_pairs_counts_the_filtered_self_intersections():
    from bodycapture.evaluation.runner import intersecting_pairs

    model = bodycapture.load_model()
    pose = torch.zeros(2, 21, 3)
    pose[1, model.joint_names.index("left_shoulder") - 1] = torch.tensor([0.0, 0.0, -1.7])  # arm into torso
    vertices = model(body_pose=pose.reshape(2, -1)).vertices
    vertices = torch.cat([vertices, torch.full_like(vertices[:1], float("nan"))])  # a failed fit counts 0
    counts = intersecting_pairs(model, vertices)
    assert counts[0] == 0 and counts[1] > 50 and counts[2] == 0


def test_ehf_like_folder(tmp_path):
    """A folder with NN_img.png, NN_2Djnt.json (OpenPose) and NN_align.ply (true mesh) is scored."""
    from PIL import Image

    from bodycapture.evaluation.runner import evaluate_folder
    from bodycapture.keypoints.openpose import write_openpose
    from bodycapture.keypoints.types import ImageKeypoints

    model = bodycapture.load_model()
    suite = generate(model, 2, seed=7, image_size=(300, 400))
    for i in range(2):
        Image.new("RGB", (400, 300)).save(tmp_path / f"{i:02d}_img.png")
        kp = suite.keypoints[i]
        write_openpose(tmp_path / f"{i:02d}_2Djnt.json", ImageKeypoints(kp.points, None))
        write_ply(tmp_path / f"{i:02d}_align.ply", suite.vertices[i].numpy(), model.faces)
    report = evaluate_folder(tmp_path, model, focal=float(suite.focal[0]))
    d = report.to_dict()
    assert d["n"] == 2 and math.isfinite(d["mean"]["pa_v2v_all"]) and d["mean"]["pa_v2v_all"] < 300
    (tmp_path / "00_align.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                           "property float y\nproperty float z\nend_header\n0 0 0\n")
    import pytest

    with pytest.raises(bodycapture.BodyCaptureError, match="same topology"):
        evaluate_folder(tmp_path, model)
