"""Video building blocks: frames streamed from a clip or a frame folder with a time window, a rate and a
stride; bad clips one line each; people linked into tracks that keep their identities when they cross."""

import numpy as np
import pytest
from PIL import Image

from bodycapture.errors import BodyCaptureError
from bodycapture.video import Tracker, TrackerConfig, link_tracks, open_clip
from bodycapture.video.frames import select_frames


def _level(i: int) -> int:
    return 20 + 7 * i  # the grey level of frame i in the test clips


def _write_video(path, frames: int = 30, fps: float = 10.0, size=(96, 128)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((*size, 3), _level(i), np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return _write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def _index_of(frame) -> int:
    return int(round((float(frame.image.mean()) - 20) / 7))


def test_a_video_streams_every_frame_in_order(video):
    clip = open_clip(video)
    assert clip.fps == pytest.approx(10.0) and clip.size == (96, 128) and clip.count == 30
    frames = list(clip)
    assert [f.index for f in frames] == list(range(30))
    assert [_index_of(f) for f in frames] == list(range(30))  # the pixels are those frames'
    assert frames[7].time == pytest.approx(0.7) and frames[0].image.dtype == np.uint8


def test_window_rate_and_stride(video):
    window = list(open_clip(video, start=1.0, end=2.0))
    assert [f.index for f in window] == list(range(10, 20)) and [_index_of(f) for f in window] == list(range(10, 20))
    half = open_clip(video, fps=5)
    assert half.fps == pytest.approx(5.0) and [f.index for f in half] == list(range(0, 30, 2))
    strided = open_clip(video, start=0.5, every=4)
    assert strided.fps == pytest.approx(2.5) and [_index_of(f) for f in strided] == [5, 9, 13, 17, 21, 25, 29]
    assert open_clip(video, fps=50).fps == pytest.approx(10.0)  # never above the source's rate


def test_select_frames_picks_the_nearest_frames():
    assert select_frames(100, 30.0, fps=10) == list(range(0, 100, 3))
    assert select_frames(10, 30.0, fps=12) == [0, 2, 5, 8]  # ticks at 0, 2.5, 5, 7.5 frames: nearest (banker's)
    assert select_frames(10, 10.0, start=0.25, end=0.55) == [3, 4, 5]


def test_a_folder_of_numbered_frames_in_numeric_order(tmp_path):
    for i in (1, 2, 10, 11, 3):  # frame_10 comes after frame_3, not after frame_1
        Image.fromarray(np.full((32, 40, 3), _level(i), np.uint8)).save(tmp_path / f"frame_{i}.png")
    clip = open_clip(tmp_path, source_fps=25)
    assert clip.fps == 25 and clip.size == (32, 40)
    assert [f.name for f in clip] == ["frame_1.png", "frame_2.png", "frame_3.png", "frame_10.png", "frame_11.png"]
    assert [_index_of(f) for f in clip] == [1, 2, 3, 10, 11]


def test_bad_clips_are_one_line(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(BodyCaptureError, match="junk.mp4: not a readable video"):
        open_clip(junk)
    with pytest.raises(BodyCaptureError, match="no such video file or frame folder"):
        open_clip(tmp_path / "missing.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BodyCaptureError, match="no frame images"):
        open_clip(empty)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames / f"{i:04d}.png")
    (frames / "0001.png").write_bytes(b"broken")
    with pytest.raises(BodyCaptureError, match=r"0001.png: not a readable image.*a frame of"):
        list(open_clip(frames))


def test_empty_or_invalid_windows_are_refused(video):
    with pytest.raises(BodyCaptureError, match="no frame between 5.0 and"):
        open_clip(video, start=5.0)
    with pytest.raises(BodyCaptureError, match="empty or invalid"):
        open_clip(video, start=2.0, end=1.0)
    with pytest.raises(BodyCaptureError, match="every must be at least 1"):
        open_clip(video, every=0)


# ------------------------------------------------------------------------------------------------------------
# tracks


def _person(cx: float, height: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A box and body keypoints of a standing person centred at x = cx (feet at y = 400)."""
    rng = np.random.default_rng(seed)
    template = rng.uniform([-0.25, 0.0], [0.25, 1.0], size=(25, 2))  # a fixed layout per person
    kp = np.zeros((135, 3))
    kp[:25, 0] = cx + template[:, 0] * height
    kp[:25, 1] = 400 - template[:, 1] * height
    kp[:25, 2] = 0.9
    box = np.array([cx - 0.3 * height, 400 - height, cx + 0.3 * height, 400])
    return box, kp


def test_two_people_crossing_keep_their_ids():
    boxes, keypoints, truth = [], [], []
    rng = np.random.default_rng(1)
    for t in range(24):
        people = [(0, *_person(100 + 20 * t, 300, 0)), (1, *_person(560 - 20 * t, 280, 1))]  # cross near t = 11.5
        if t == 13:
            people = people[1:]  # person 0 missed in one frame, right after the crossing
        order = rng.permutation(len(people))  # the detector's order means nothing
        people = [people[i] for i in order]
        truth.append(np.array([p[0] for p in people]))
        boxes.append(np.stack([p[1] for p in people]))
        keypoints.append(np.stack([p[2] for p in people]))
    ids = link_tracks(boxes, keypoints)
    first = {int(p): int(i) for p, i in zip(truth[0], ids[0])}
    assert len(set(first.values())) == 2
    for t in range(24):  # every frame: the same person has the same id as in frame 0
        assert [first[int(p)] for p in truth[t]] == ids[t].tolist(), t


def test_crossing_with_boxes_only():
    boxes = [np.stack([_person(100 + 20 * t, 300, 0)[0], _person(560 - 20 * t, 300, 1)[0]]) for t in range(24)]
    ids = link_tracks(boxes)
    assert all(i.tolist() == ids[0].tolist() for i in ids)


def test_a_long_gap_starts_a_new_track():
    tracker = Tracker(TrackerConfig(max_gap=3))
    box = _person(200, 300, 0)[0][None]
    a = tracker.update(0, box)[0]
    assert tracker.update(4, box)[0] == a  # missed frames 1-3: continued
    assert tracker.update(9, box)[0] != a  # missed frames 5-8: longer than max_gap, a new track
    assert len(tracker.update(10, np.zeros((0, 4)))) == 0


# ------------------------------------------------------------------------------------------------------------
# the synthetic video suite and its metrics


def test_synthetic_clip_follows_the_capture_under_a_fixed_camera():
    import bodycapture
    from bodycapture.evaluation.video import CAMERA_TURN, mocap_test_clips, synthetic_clip

    model = bodycapture.load_model()
    clips = mocap_test_clips()
    assert len(clips) >= 4 and all(c["fps"] == 30.0 for c in clips.values())
    clip = synthetic_clip(model, "16_11", seed=1, frames=20)
    assert len(clip.keypoints) == 20 and clip.fps == 30.0
    betas = clip.params["betas"]
    assert torch_allclose(betas, betas[:1].expand_as(betas))  # one shape for the clip
    root = clips["16_11"]["root_position"][:20]
    pelvis = clip.joints[:, 0].double().numpy()
    # the pelvis moves exactly as the captured root, seen from one fixed camera
    np.testing.assert_allclose(pelvis - pelvis[0], (root - root[0]) @ CAMERA_TURN.T, atol=1e-4)
    assert (clip.vertices[..., 2] > 0.5).all()  # in front of the camera
    seen = np.stack([k.points[0, :25, 2] > 0 for k in clip.keypoints])
    assert (seen.sum(1) >= 12).all()  # most body points detected in every frame


def torch_allclose(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b))


def test_acceleration_error_closed_forms():
    from bodycapture.evaluation.video import acceleration, acceleration_error

    T = 30
    t = np.arange(T, dtype=np.float64)
    true = np.zeros((T, 2, 3))
    pred = np.zeros((T, 2, 3))
    pred[:, 1, 0] = 0.5 * 0.002 * t**2  # joint 1 accelerates at 2 mm per frame squared; the root does not
    assert acceleration_error(pred, true) == pytest.approx(1.0)  # mean over the two joints
    assert acceleration(pred) == pytest.approx(1.0)
    moving = pred + np.array([0.3, 0.0, 0.0]) * t[:, None, None]  # a constant velocity of the whole body
    assert acceleration_error(moving, true) == pytest.approx(1.0)  # root-relative: it does not count
    rng = np.random.default_rng(0)
    sigma = 0.004
    noisy = np.zeros((20000, 2, 3))
    noisy[:, 1] = rng.normal(scale=sigma, size=(20000, 3))  # white noise on joint 1
    expected = np.sqrt(6) * sigma * 2 * np.sqrt(2 / np.pi) * 1000 / 2  # E|N(0, 6 sigma^2 I3)|, over 2 joints
    assert acceleration_error(noisy, np.zeros_like(noisy)) == pytest.approx(expected, rel=0.03)


# ------------------------------------------------------------------------------------------------------------
# temporal smoothing of a track's parameters


def test_smoothing_keeps_steady_motion_and_removes_jitter():
    import torch

    from bodycapture.models.lbs import axis_angle_to_matrix
    from bodycapture.video.smoothing import smooth_rotations, smooth_track

    T = 40
    t = np.arange(T, dtype=np.float64)
    axis = np.array([0.3, 0.8, -0.52]) / np.linalg.norm([0.3, 0.8, -0.52])
    steady = (0.05 * t)[:, None] * axis  # a constant angular velocity about one axis
    smoothed = smooth_rotations(steady, sigma=2.0)
    inner = slice(11, T - 11)  # beyond the window (10.5 sigma-2 frames) from the ends: symmetric windows
    np.testing.assert_allclose(smoothed[inner], steady[inner], atol=1e-9)
    rng = np.random.default_rng(0)
    noisy = steady + rng.normal(scale=0.05, size=steady.shape)
    R = lambda a: axis_angle_to_matrix(torch.as_tensor(a)).numpy()  # noqa: E731
    second = lambda m: np.linalg.norm(m[2:] - 2 * m[1:-1] + m[:-2], axis=(-2, -1)).mean()  # noqa: E731
    assert second(R(smooth_rotations(noisy, 2.0))) < second(R(noisy)) / 5  # jitter mostly gone
    out = R(smooth_rotations(noisy, 2.0))
    np.testing.assert_allclose(out @ np.swapaxes(out, -1, -2), np.broadcast_to(np.eye(3), out.shape), atol=1e-9)

    params = {"betas": rng.normal(size=(T, 10)), "transl": np.c_[0.02 * t, np.zeros(T), 3 + 0 * t],
              "body_pose": np.tile(steady, (1, 21)), "expression": np.zeros((T, 10))}
    track = smooth_track(params, sigma=2.0)
    assert np.allclose(track["betas"], np.median(params["betas"], 0))  # one shape for the track
    np.testing.assert_allclose(track["transl"][inner], params["transl"][inner], atol=1e-9)  # linear motion kept
    np.testing.assert_allclose(track["body_pose"][inner], params["body_pose"][inner], atol=1e-9)
    assert smooth_track(params, sigma=0)["transl"].tolist() == params["transl"].tolist()  # sigma 0: unchanged
