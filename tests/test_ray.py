"""--engine ray (engine/ray.py) on a local Ray instance started inside the tests (num_cpus=2): the same
results as the plain local run, a worker killed mid-shard retried with nothing lost or written twice, a
re-run that fits only what is missing, and a one-line error without Ray.

The photos are copies of one real photo with its OpenPose keypoints (--keypoints), so that no detector
runs: these tests are about the engine, not detection."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import clips
import torch

import bodycapture
from bodycapture.cli import main
from bodycapture.engine.ray import MANIFEST, RayOptions, capture_ray
from bodycapture.evaluation.metrics import pa_mpjpe
from bodycapture.pipeline import CaptureOptions, capture  # noqa: F401 - the local run (clip_local) imports it from here
from bodycapture.video.sequence import SequenceConfig

ray = pytest.importorskip("ray") if os.environ.get("CI") != "true" else __import__("ray")

DATA = Path(__file__).resolve().parent / "data" / "openpose"
NAMES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four photos and a folder of their keypoint files."""
    root = tmp_path_factory.mktemp("ray")
    (root / "photos").mkdir()
    (root / "kp").mkdir()
    for name in NAMES:
        shutil.copy(DATA / "lsp_im1010.jpg", root / "photos" / f"{name}.jpg")
        shutil.copy(DATA / "lsp_im1010_keypoints.json", root / "kp" / f"{name}_keypoints.json")
    return root


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _config():
    config = bodycapture.FitConfig()
    config.interpenetration = False  # faster; the engine does not care
    return config


def _options(root: Path, out: str, **kw) -> CaptureOptions:
    return CaptureOptions(out=root / out, keypoints=root / "kp", progress=False, batch_images=2, threads=1, **kw)


@pytest.fixture(scope="module")
def serial(photos):
    """The plain local run, as a user starts it: a fresh process."""
    run = subprocess.run([sys.executable, "-m", "bodycapture", "fit", str(photos / "photos"), "--keypoints",
                          str(photos / "kp"), "--out", str(photos / "serial"), "--no-collision", "--batch-images", "2",
                          "--threads", "1", "-q"], capture_output=True, text=True, timeout=600,
                         env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
    assert run.returncode == 0, run.stderr
    return sorted(p.name for p in (photos / "serial").iterdir() if (p / "params.npz").is_file())


def test_two_workers_give_the_serial_results(photos, cluster, serial):
    report = capture_ray(photos / "photos", config=_config(), options=_options(photos, "ray"),
                         ray=RayOptions(workers=2, shard_images=2))
    assert report.count("done") == 4 and serial == NAMES
    for name in NAMES:
        a, b = np.load(photos / "serial" / name / "params.npz"), np.load(photos / "ray" / name / "params.npz")
        for key in ("betas", "body_pose", "global_orient", "transl", "left_hand_pose", "expression"):
            np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-4, err_msg=f"{name} {key}")
        assert sorted(p.name for p in (photos / "ray" / name).iterdir()) == \
            sorted(p.name for p in (photos / "serial" / name).iterdir())
    manifest = json.loads((photos / "ray" / MANIFEST).read_text())
    assert [s["status"] for s in manifest["shards"].values()] == ["done", "done"]
    assert (photos / "ray" / "index.html").is_file()
    assert "4 images" in report.summary() and "4 fitted" in report.summary()
    assert "2 shards on Ray" in report.summary() and "images/s" in report.summary()


def _kill_shard_workers() -> int:
    """SIGKILL every Ray worker process running a shard (its process title is ray::run_shard)."""
    killed = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore")
        except OSError:
            continue
        if "ray::run_shard" in cmdline:
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed


def test_a_worker_killed_mid_shard_is_retried_and_nothing_is_lost_or_written_twice(photos, cluster):
    out = photos / "killed"
    options = _options(photos, "killed", overwrite=True)
    options.batch_images = 1  # each photo written as soon as it is fitted: the kill lands between two
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=capture_ray(
        photos / "photos", config=_config(), options=options, ray=RayOptions(workers=2, shard_images=2))))
    thread.start()
    deadline = time.time() + 240
    def written():  # published results (staging folders start with a dot)
        return [p for p in out.glob("[!.]*") if (p / "params.npz").is_file()] if out.exists() else []

    while time.time() < deadline and not written():
        time.sleep(0.05)
    first = {p.name: (p / "params.npz").stat().st_mtime_ns for p in written()}
    assert first, "no result appeared"
    assert _kill_shard_workers() >= 1
    thread.join(timeout=600)
    report = result["report"]
    assert report.count("done") == 4, [im.message for im in report.images]
    for name in NAMES:
        assert (out / name / "params.npz").is_file()
    for name, mtime in first.items():  # written before the kill, by the same run: kept, not written again
        assert (out / name / "params.npz").stat().st_mtime_ns == mtime
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != MANIFEST.parts[0]]


def test_a_re_run_fits_only_what_is_missing(photos, cluster, serial):
    out = photos / "resume"
    out.mkdir()
    for name in NAMES[:3]:  # an earlier run that stopped after three photos
        shutil.copytree(photos / "serial" / name, out / name)
    report = capture_ray(photos / "photos", config=_config(), options=_options(photos, "resume"),
                         ray=RayOptions(workers=2, shard_images=2))
    assert [im.status for im in report.images] == ["skipped", "skipped", "skipped", "done"]
    again = capture_ray(photos / "photos", config=_config(), options=_options(photos, "resume"),
                        ray=RayOptions(workers=2, shard_images=2))
    assert [im.status for im in again.images] == ["skipped"] * 4


def test_without_ray_the_engine_says_how_to_install_it(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["fit", str(photos / "photos"), "--keypoints", str(photos / "kp"), "--out", str(tmp_path / "o"),
                 "--engine", "ray"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and 'pip install "bodycapture[ray]"' in lines[0], err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_impossible_requests_are_one_line(photos, cluster, tmp_path):
    """A task asking for a GPU the cluster does not have would wait for ever: refused up front; a clip that
    is not a video is its report's one line."""
    from bodycapture.errors import BodyCaptureError

    with pytest.raises(BodyCaptureError, match="--gpus-per-task 1: the Ray cluster has no GPU"):
        capture_ray(photos / "photos", config=_config(), options=_options(photos, "gpu"), ray=RayOptions(gpus_per_task=1))
    with pytest.raises(BodyCaptureError, match="--cpus-per-task 64: the Ray cluster has 2 CPUs"):
        capture_ray(photos / "photos", config=_config(), options=_options(photos, "cpu"), ray=RayOptions(cpus_per_task=64))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    report = capture_ray(clip, config=_config(), options=CaptureOptions(out=tmp_path / "clip", progress=False))
    assert report.clips[0].status == "failed" and "not a readable video" in report.clips[0].message
    assert not (tmp_path / "clip" / "clip").exists()
    assert not (photos / "gpu").exists() or not [p for p in (photos / "gpu").iterdir() if not p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ clips
# A synthetic clip (tests/clips.py: two people crossing, a detector that reads the frame number from the
# grey level) of 32 frames in shards of 16 with windows of 8: two shards, the second with 8 frames of
# burn-in. The detectors below run in Ray workers, so clips.py and this module are pickled by value.
CLIP_FRAMES = 32
CLIP_SEQUENCE = SequenceConfig(window=8, key_every=3, max_iter=30, first_max_iter=60, key_max_iter=15)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    ray.cloudpickle.register_pickle_by_value(clips)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    root = tmp_path_factory.mktemp("rayclip")
    model = bodycapture.load_model()
    a, b, kp_a, kp_b = clips.crossing_people(model, CLIP_FRAMES)
    video = clips._write_video(root / "walk.mp4", CLIP_FRAMES)
    return root, video, (a, b), (kp_a, kp_b)


def _clip_options(root: Path, out: str, **kw) -> CaptureOptions:
    return CaptureOptions(out=root / out, progress=False, sequence=CLIP_SEQUENCE, min_track_frames=5, threads=1,
                          overlay_video=False, **kw)


def _clip_config():
    config = bodycapture.FitConfig()
    config.focal_length = clips.FOCAL
    return config


class LoggingDetector(clips.FakeDetector):
    """The fake detector, which also leaves a file per frame it detects in `log` (they run in workers);
    with `broken`, frames from `broken` on are unreadable; with `die`, the first call of all (a marker file
    says which) kills its worker."""

    def __init__(self, kp, log: Path, broken: int | None = None, die: Path | None = None):
        super().__init__(*kp)
        self.log, self.broken, self.die = log, broken, die

    def __call__(self, image):
        from bodycapture.errors import BodyCaptureError

        i = clips.frame_number(image)
        if self.broken is not None and i >= self.broken:
            raise BodyCaptureError(f"frame {i} is unreadable")
        if self.die is not None and not self.die.exists():
            self.die.write_text("died")
            os._exit(1)  # the worker dies mid-shard
        self.log.mkdir(parents=True, exist_ok=True)
        (self.log / f"{i}-{time.time_ns()}").touch()
        return super().__call__(image)


def _logged_frames(log: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in log.iterdir()) if log.exists() else []


def _joints(z) -> np.ndarray:
    model = bodycapture.pipeline.load_fit_model()
    with torch.no_grad():
        out = model(**{k: torch.as_tensor(z[k], dtype=torch.float32) for k in model.parameter_sizes()})
    return out.joints[:, :22].double()


def _acceleration(joints: np.ndarray) -> np.ndarray:
    """(T - 2,) mean joint acceleration per frame, mm/frame^2, of joints (T, J, 3) in metres."""
    return np.linalg.norm(joints[2:] - 2 * joints[1:-1] + joints[:-2], axis=-1).mean(-1) * 1000


@pytest.fixture(scope="module")
def clip_local(clip):
    """The local run of the clip, in a fresh process that pins numpy's threads as the CLI does (and as Ray
    workers run): -> its result folder."""
    root, video, truth, kp = clip
    np.savez(root / "kp.npz", a=kp[0], b=kp[1])  # the same detections (recomputed, they could round differently)
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import test_ray
from test_ray import capture, clips
z = test_ray.np.load({str(root / "kp.npz")!r})
kp = (z["a"], z["b"])
report = capture({str(video)!r}, config=test_ray._clip_config(), options=test_ray._clip_options(
    test_ray.Path({str(root)!r}), "local"), detector_factory=lambda: clips.FakeDetector(*kp))
assert report.clips[0].status == "done", report.clips[0].message
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    return root / "local" / "walk"


def _tracks(folder: Path) -> list[tuple]:
    return [(t["id"], t["frames"], t["detected"]) for t in json.loads((folder / "clip.json").read_text())["tracks"]]


def test_a_clip_of_one_shard_is_the_local_run_bit_for_bit(clip, clip_local, cluster):
    root, video, truth, kp = clip
    report = capture_ray(video, config=_clip_config(), options=_clip_options(root, "one"),
                         ray=RayOptions(workers=2, shard_frames=CLIP_FRAMES), detector_factory=lambda: clips.FakeDetector(*kp))
    (mine,) = report.clips
    assert mine.status == "done" and report.timings["shards"] == 1 and len(mine.tracks) == 2
    assert _tracks(mine.folder) == _tracks(clip_local)
    for track in mine.tracks:
        z, zl = (np.load(folder / f"track_{track['id']}_params.npz") for folder in (mine.folder, clip_local))
        assert sorted(z.files) == sorted(zl.files)
        for key in z.files:
            np.testing.assert_array_equal(z[key], zl[key], err_msg=key)


def test_a_clip_in_shards_on_two_workers_fits_as_the_local_run(clip, clip_local, cluster):
    root, video, truth, kp = clip
    report = capture_ray(video, config=_clip_config(), options=_clip_options(root, "ray"),
                         ray=RayOptions(workers=2, shard_frames=16), detector_factory=lambda: clips.FakeDetector(*kp))
    (mine,) = report.clips
    assert mine.status == "done" and mine.frames == CLIP_FRAMES and report.timings["shards"] == 2
    assert _tracks(mine.folder) == _tracks(clip_local)  # the tracker's ids, over the whole clip
    assert sorted(p.name for p in mine.folder.iterdir()) == sorted(p.name for p in clip_local.iterdir())
    for track in mine.tracks:
        z, zl = (np.load(folder / f"track_{track['id']}_params.npz") for folder in (mine.folder, clip_local))
        np.testing.assert_array_equal(z["frame"], zl["frame"])
        np.testing.assert_array_equal(z["betas"], np.repeat(z["betas"][:1], len(z["betas"]), 0))  # one shape
        frames = z["frame"]
        person = min((0, 1), key=lambda i: np.abs(z["keypoints_2d"][:, :25] - kp[i][frames, :25, :2]).mean())
        true = truth[person].joints[frames, :22].double()
        err, err_local = (float(pa_mpjpe(_joints(x), true).mean() * 1000) for x in (z, zl))
        assert err < err_local + 10 and err < 110, f"track {track['id']}: {err:.0f} mm sharded, {err_local:.0f} local"
        # no seam: around the shards' join (frames 8..15 cross-faded) the motion is as smooth as elsewhere
        accel, accel_local = (_acceleration(_joints(x).numpy()) for x in (z, zl))
        join = (frames[1:-1] >= 6) & (frames[1:-1] <= 17)  # accel[i] is at frame i + 1
        print(f"track {track['id']}: PA-MPJPE {err:.1f} mm sharded, {err_local:.1f} local; acceleration at the "
              f"join {accel[join].mean():.1f} (local {accel_local[join].mean():.1f}), elsewhere "
              f"{accel[~join].mean():.1f} ({accel_local[~join].mean():.1f}) mm/frame^2")
        assert accel[join].mean() < 1.5 * accel_local[join].mean() + 5
        assert np.median(z["residual_px"]) < 2 * np.median(zl["residual_px"]) + 2
    manifest = json.loads((root / "ray" / MANIFEST).read_text())
    assert manifest["clips"]["walk"]["status"] == "done"
    assert not list((root / "ray" / MANIFEST.parent / "clips").iterdir())  # the job's files are gone


def test_a_clip_re_run_after_a_failure_continues_and_a_killed_worker_is_retried(clip, cluster):
    """First run: the second shard's frames cannot be read -> the clip fails with one line, the first
    shard's detections stay. Second run: only the second shard's frames are detected, and the first
    attempt of it dies (its worker killed): Ray retries it, the clip is done."""
    root, video, truth, kp = clip
    log = root / "log"
    options = _clip_options(root, "resume")
    ray_options = RayOptions(workers=2, shard_frames=16)
    first = capture_ray(video, config=_clip_config(), options=options, ray=ray_options,
                        detector_factory=lambda: LoggingDetector(kp, log, broken=16))
    (failed,) = first.clips
    assert failed.status == "failed" and "frame 16 is unreadable" in failed.message and "\n" not in failed.message
    assert not (root / "resume" / "walk").exists()
    assert _logged_frames(log) == list(range(16))
    shutil.rmtree(log)
    again = capture_ray(video, config=_clip_config(), options=options, ray=ray_options,
                        detector_factory=lambda: LoggingDetector(kp, log, die=root / "died"))
    assert (root / "died").exists()  # an attempt was killed
    assert again.clips[0].status == "done" and again.clips[0].frames == CLIP_FRAMES
    assert _logged_frames(log) == list(range(16, 32))  # the first shard was not detected again
    assert len(again.clips[0].tracks) == 2


def test_a_tasks_detector_uses_only_the_tasks_cores():
    """Ray runs each task's detection inline, without pinning it to its CPUs: the detector's worker threads
    are the task's threads (--cpus-per-task), not every core the machine has."""
    from bodycapture.engine.ray import inline_detector

    for threads in (1, 3):
        detector = inline_detector(CaptureOptions(threads=threads, max_people=4))()
        assert detector.workers == threads and detector.max_people == 4
    assert inline_detector(CaptureOptions())().workers is None  # a plain run: the detector's default
