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

import bodycapture
from bodycapture.cli import main
from bodycapture.engine.ray import MANIFEST, RayOptions, capture_ray
from bodycapture.pipeline import CaptureOptions

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


def test_impossible_requests_and_clips_are_one_line(photos, cluster, tmp_path):
    """A task asking for a GPU the cluster does not have would wait for ever: refused up front; clips are
    not sharded (yet): refused with a line saying so."""
    from bodycapture.errors import BodyCaptureError

    with pytest.raises(BodyCaptureError, match="--gpus-per-task 1: the Ray cluster has no GPU"):
        capture_ray(photos / "photos", config=_config(), options=_options(photos, "gpu"), ray=RayOptions(gpus_per_task=1))
    with pytest.raises(BodyCaptureError, match="--cpus-per-task 64: the Ray cluster has 2 CPUs"):
        capture_ray(photos / "photos", config=_config(), options=_options(photos, "cpu"), ray=RayOptions(cpus_per_task=64))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(BodyCaptureError, match="fit clips without it"):
        capture_ray(clip, config=_config(), options=_options(photos, "clip"))
    assert not (photos / "gpu").exists() or not [p for p in (photos / "gpu").iterdir() if not p.name.startswith(".")]
