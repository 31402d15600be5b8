"""The clip pipeline end to end (video/capture.py, video/sequence.py) on a synthetic clip with exact ground
truth: two people who cross in the image keep their track ids, one shape per track, fits near the truth,
smoother than per-frame fits; every output readable; bad clips one line and nothing written.

The detector is replaced by one that reads the frame number from the frame's grey level and returns the
synthetic people's keypoints of that frame: the pipeline around it (decoding, tracking, fitting, writing)
is the real one. One capture is shared by the tests (module fixture): it is the slow part."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.evaluation.metrics import pa_mpjpe
from bodycapture.evaluation.video import acceleration
from bodycapture.pipeline import CaptureOptions, capture
from bodycapture.video.sequence import SequenceConfig, SequenceFitter, _interpolate, _path

from clips import FOCAL, FRAMES, SIZE, FakeDetector, _write_video, crossing_people


@pytest.fixture(scope="module")
def people():
    """Two synthetic people (two held-out clips, one shape each), moved so that they cross."""
    return crossing_people(bodycapture.load_model())


SEQUENCE = SequenceConfig(window=10, key_every=3, max_iter=30, first_max_iter=60, key_max_iter=15)


@pytest.fixture(scope="module")
def captured(people, tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    video = _write_video(root / "walk.mp4", FRAMES)
    a, b, kp_a, kp_b = people
    config = bodycapture.FitConfig()
    config.focal_length = FOCAL
    options = CaptureOptions(out=root / "out", progress=False, sequence=SEQUENCE, min_track_frames=5)
    report = capture(video, config=config, options=options, detector_factory=lambda: FakeDetector(kp_a, kp_b))
    return report, root / "out" / "walk"


def _distance(fitted: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """(T,) mean pixel distance between fitted (T, 25, 2) and detected (T, >=25, 3) body points, over the
    detected ones."""
    seen = detected[:, :25, 2] > 0
    d = np.linalg.norm(fitted[:, :25] - detected[:, :25, :2], axis=-1)
    return (d * seen).sum(1) / seen.sum(1)


def test_two_crossing_people_keep_their_tracks(captured, people):
    report, folder = captured
    a, b, kp_a, kp_b = people
    clip = report.clips[0]
    assert clip.status == "done" and clip.frames == FRAMES and len(clip.tracks) == 2
    for track in clip.tracks:
        z = np.load(folder / f"track_{track['id']}_params.npz")
        assert len(z["frame"]) == FRAMES and z["detected"].all()
        fitted = z["keypoints_2d"][:, :25]
        # per frame: which person's detections the track's fitted keypoints are nearest to
        d_a, d_b = _distance(fitted, kp_a), _distance(fitted, kp_b)
        nearest_a = d_a < d_b
        assert nearest_a.all() or (~nearest_a).all(), "a track switched people"
        assert np.minimum(d_a, d_b).max() < 25  # px: the track follows its person closely in every frame
    ids = [t["id"] for t in clip.tracks]
    assert len(set(ids)) == 2


def test_one_shape_per_track_and_fits_near_the_truth(captured, people):
    report, folder = captured
    a, b, kp_a, kp_b = people
    for track in report.clips[0].tracks:
        z = np.load(folder / f"track_{track['id']}_params.npz")
        np.testing.assert_array_equal(z["betas"], np.repeat(z["betas"][:1], len(z["betas"]), 0))
        truth = a if _distance(z["keypoints_2d"], kp_a).mean() < 25 else b
        model = bodycapture.pipeline.load_fit_model()
        with torch.no_grad():
            out = model(**{k: torch.as_tensor(z[k], dtype=torch.float32) for k in model.parameter_sizes()})
        err = pa_mpjpe(out.joints[:, :22].double(), truth.joints[:, :22].double()) * 1000
        assert float(err.mean()) < 110, f"track {track['id']}: PA-MPJPE {float(err.mean()):.0f} mm"
        # the fit is smooth: its acceleration is near the truth's (per-frame fits: about 10x the truth's)
        assert acceleration(out.joints[:, :22].numpy()) < 4 * acceleration(truth.joints[:, :22].numpy()) + 5


def test_every_output_is_written_and_readable(captured):
    import cv2
    from pygltflib import GLTF2

    report, folder = captured
    names = sorted(p.name for p in folder.iterdir())
    for t in report.clips[0].tracks:
        for suffix in (".npz", ".glb", ".bvh", "_params.npz"):
            assert f"track_{t['id']}{suffix}" in names
        gltf = GLTF2().load(str(folder / f"track_{t['id']}.glb"))
        assert len(gltf.skins) == 1 and len(gltf.animations) == 1
        amass = np.load(folder / f"track_{t['id']}.npz")
        assert amass["poses"].shape[0] == FRAMES and float(amass["mocap_framerate"]) == pytest.approx(30.0)
    cap = cv2.VideoCapture(str(folder / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[:2] == SIZE and frame.std() > 5  # meshes drawn over the flat grey frame
    html = (folder / "report.html").read_text()
    assert '"animation"' in html
    summary = json.loads((folder / "clip.json").read_text())
    assert summary["status"] == "done" and len(summary["tracks"]) == 2
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")], "staging left behind"
    assert "1 clip: 30 frames, 2 tracks fitted" in report.summary()
    from bodycapture.io.report import index_rows

    row = [r for r in index_rows(report) if r["name"] == "walk"][0]
    assert row["people"] == 2 and row["report"] == "walk/report.html" and row["thumbnail"] == "walk/overlay.png"
    assert report.index is not None and "walk/report.html" in report.index.read_text()


def test_a_clip_with_nobody_writes_nothing(people, tmp_path):
    video = _write_video(tmp_path / "empty.mp4", 8)
    a, b, kp_a, kp_b = people
    report = capture(video, options=CaptureOptions(out=tmp_path / "out", progress=False, sequence=SEQUENCE),
                     detector_factory=lambda: FakeDetector(kp_a, kp_b, people=0))
    clip = report.clips[0]
    assert clip.status == "empty" and "no person found in 8 frames" in clip.message and "\n" not in clip.message
    assert not (tmp_path / "out").exists()


def test_bad_clips_are_one_line_and_write_nothing(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((32, 48, 3), 90, np.uint8)).save(frames / f"frame_{i:03d}.png")
    (frames / "frame_002.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "out"
    for args in ([str(broken)], [str(frames), "--clip"]):
        run = subprocess.run([sys.executable, "-m", "bodycapture", "fit", *args, "--out", str(out), "-q"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 1, run.stderr
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
        assert (str(broken) if "--clip" not in args else "frame_002.png") in lines[0]
        assert not out.exists() or not any(out.iterdir())


def test_interpolation_between_key_frames():
    """The start path: exact at the key frames, constant beyond them, the orientation along the geodesic
    (half-way = half the angle about the same axis)."""
    a = {"global_orient": torch.tensor([0.0, 0.0, 0.0]), "transl": torch.tensor([0.0, 0.0, 2.0]),
         "pose_latent": torch.zeros(4)}
    b = {"global_orient": torch.tensor([0.0, 1.2, 0.0]), "transl": torch.tensor([1.0, 0.0, 4.0]),
         "pose_latent": torch.ones(4)}
    half = _interpolate(a, b, torch.tensor([[0.5]]))
    torch.testing.assert_close(half["global_orient"][0], torch.tensor([0.0, 0.6, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(half["transl"][0], torch.tensor([0.5, 0.0, 3.0]))
    path = _path([(-1, a), (3, b)], 6)  # frames 0..5: from a (at -1) to b (at 3), then b
    torch.testing.assert_close(path["pose_latent"][:, 0], torch.tensor([0.25, 0.5, 0.75, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(path["global_orient"][3], b["global_orient"], atol=1e-6, rtol=0)


def test_the_temporal_term_removes_jitter(people):
    """Same clip, same fitter, with and without the acceleration term: the term makes the motion smoother
    (the per-frame detector noise is independent between frames). The ratio moves with rounding: over the
    same clip with its points moved by 1e-4 to 0.1 px, and over two versions of the code that round the
    kinematic chain differently, it ranged 0.23-0.54 (2026-12-02); without the term it is 1."""
    a, b, kp_a, kp_b = people
    model = bodycapture.pipeline.load_fit_model()
    kp = np.stack([k.points[0] for k in a.keypoints])[:20]
    accel = {}
    for weight in (0.0, 2.0):
        config = SequenceConfig(window=10, key_every=3, max_iter=30, first_max_iter=60, key_max_iter=15,
                                acceleration=weight)
        fit = SequenceFitter(model, config, SIZE, focal_length=FOCAL).fit({7: kp})[7]
        assert fit.start == 0 and len(fit.residual_px) == 20
        accel[weight] = acceleration(fit.joints[:, :22])
    assert accel[2.0] < 0.65 * accel[0.0], accel


def test_a_missing_clip_is_one_line_before_anything_starts(tmp_path, capsys):
    from bodycapture.cli import main

    assert main(["fit", str(tmp_path / "nowhere.mp4"), "--out", str(tmp_path / "out")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"bodycapture: error: {tmp_path / 'nowhere.mp4'}: no such video file or frame folder"]
    assert not (tmp_path / "out").exists()
