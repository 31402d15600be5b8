"""The bundled MediaPipe detector on real photos and on a render of the open model.

These run in CI (MediaPipe is a dependency; its models ship in the wheel); they are marked `detector`
so that `-m "not detector"` can skip them when iterating on something else.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.cli import main as cli_main
from bodycapture.io.raster import OrthoView, render_orthographic
from bodycapture.keypoints import GROUPS, KeypointRegressor, read_keypoints
from bodycapture.keypoints.layout import BODY_25, FACE, LEFT_HAND, RIGHT_HAND
from bodycapture.keypoints.mediapipe import MediaPipeDetector, read_image

pytestmark = pytest.mark.detector
IMAGES = Path(__file__).resolve().parent / "data" / "images"
B = BODY_25.index
FACING_CAMERA = ["coco_294.jpg", "coco_328.jpg", "coco_428.jpg", "coco_564.jpg", "coco_623.jpg"]
STANDING = ["coco_564.jpg", "coco_569.jpg", "coco_623.jpg"]  # whole body in view, upright
OTHERS = ["coco_338.jpg", "coco_488.jpg", "coco_544.jpg"]  # small, sitting or partly hidden people
# face to the camera, torso turned sideways: the shoulders are about 10 px apart and their left-right order
# flips between crops (the fitter tries both orientations of such side views)
TURNED = ["coco_294.jpg"]


@pytest.fixture(scope="module")
def detector():
    with MediaPipeDetector() as det:
        yield det


COUNTS = json.loads((IMAGES.parent / "people_counts.json").read_text())


@pytest.mark.parametrize("name", sorted(set(FACING_CAMERA + STANDING + OTHERS)))
def test_finds_the_person_with_plausible_geometry(detector, name):
    """The largest person of each photo (people are ordered by size) has a plausible skeleton; photos with
    one person give exactly one, the others at most their hand count and the borderline people its notes
    name (real, but under 10 % of the height or less than half visible)."""
    kp = detector(IMAGES / name)
    h, w = read_image(IMAGES / name).shape[:2]
    expected = COUNTS[name]["people"]
    assert kp.image_size == (h, w) and 1 <= kp.num_people <= expected + COUNTS[name].get("borderline", 0)
    if expected == 1:
        assert kp.num_people == 1
    p = kp.points[0]
    seen = p[:, 2] > 0
    assert ((p[seen, 0] >= 0) & (p[seen, 0] <= w) & (p[seen, 1] >= 0) & (p[seen, 1] <= h)).all()
    assert seen[B("Nose")] and seen[B("Neck")]
    np.testing.assert_allclose(p[B("Neck"), :2], (p[B("RShoulder"), :2] + p[B("LShoulder"), :2]) / 2)
    if seen[B("MidHip")]:
        assert p[B("Nose"), 1] < p[B("MidHip"), 1]  # the nose above the hips (image y points down)
    if name in STANDING:
        assert p[B("Nose"), 1] < p[B("Neck"), 1] < p[B("MidHip"), 1] < min(p[B("LAnkle"), 1], p[B("RAnkle"), 1])
        assert p[B("LAnkle"), 2] > 0.4 and p[B("RAnkle"), 2] > 0.4  # seen (crops move MediaPipe's scores a little)
    if name in FACING_CAMERA:  # the subject's left appears on the image's right
        if name not in TURNED:
            assert p[B("LShoulder"), 0] > p[B("RShoulder"), 0]
        assert p[B("LEye"), 0] > p[B("REye"), 0]
    assert kp.world is not None and kp.world.shape == (kp.num_people, 25, 4)
    assert abs(kp.world[0, B("MidHip"), :3]).max() < 0.1  # MediaPipe's world points are hip-centred


def test_hands_are_assigned_to_the_right_side(detector):
    """Every detected hand sits at its own side's wrist (both wrists detected), in every photo."""
    checked = 0
    for name in sorted(set(FACING_CAMERA + STANDING + OTHERS)):
        for p in detector(IMAGES / name).points:
            for hand, own, other in ((LEFT_HAND, "LWrist", "RWrist"), (RIGHT_HAND, "RWrist", "LWrist")):
                if p[hand[0], 2] > 0 and p[B(own), 2] > 0 and p[B(other), 2] > 0:
                    to_own = np.linalg.norm(p[hand[0], :2] - p[B(own), :2])
                    assert to_own < np.linalg.norm(p[hand[0], :2] - p[B(other), :2]), name
                    checked += 1
    assert checked >= 8  # measured: 12 hands over the nine photos


def test_a_reading_does_not_depend_on_what_was_read_before(detector):
    """The same photo read again, right after itself and after another photo, gives the same keypoints,
    hands and face included (Holistic's own hand and face subgraphs track: they read in the previous
    reading's region when it overlaps, which moved coco_623's face by 3.8 px and coco_569's hands by 0.4 px
    on a second reading)."""
    order = ["coco_623.jpg", "coco_623.jpg", "coco_569.jpg", "coco_623.jpg", "coco_569.jpg", "coco_569.jpg"]
    readings = {}
    for name in order:
        readings.setdefault(name, []).append(detector(IMAGES / name))
    assert (readings["coco_623.jpg"][0].points[0, FACE, 2] > 0).sum() >= 40
    assert (readings["coco_569.jpg"][0].points[0, np.r_[LEFT_HAND, RIGHT_HAND], 2] > 0).sum() >= 21
    for first, *later in readings.values():
        for other in later:
            np.testing.assert_array_equal(other.points, first.points)
            np.testing.assert_array_equal(other.world, first.world)


@pytest.mark.parametrize("before", ["", "import matplotlib"])
def test_mediapipe_is_imported_without_its_unused_parts_which_load_on_first_use(before):
    """In a fresh interpreter the detector's MediaPipe import leaves matplotlib, the drawing helpers and the Tasks
    API unimported and no stand-in behind (matplotlib imported before, as in a notebook, is left alone);
    mediapipe.solutions and mediapipe.tasks then work as usual."""
    import subprocess
    import sys

    code = before + """
import sys, types
from bodycapture.keypoints.mediapipe import DEFERRED_MODULES, _import_mediapipe
mine = [n for n in DEFERRED_MODULES if n not in sys.modules]
mp = _import_mediapipe()
assert not [n for n in mine if n in sys.modules], [n for n in mine if n in sys.modules]
assert "mediapipe.python.solution_base" in sys.modules
assert mp.solutions.pose.Pose.__name__ == "Pose" and mp.solutions.drawing_utils.DrawingSpec.__name__ == "DrawingSpec"
assert mp.tasks.vision.PoseLandmarker.__name__ == "PoseLandmarker"
used = ["mediapipe.python.solutions.drawing_utils", "mediapipe.tasks.python", "matplotlib.pyplot"]
assert all(type(sys.modules[n]) is types.ModuleType for n in used), [type(sys.modules.get(n)) for n in used]
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_crop_is_read_as_mediapipe_pose_reads_it(detector):
    """The crops of the seeds whose own region failed are read with the detector's graphs (the person detector's
    first detection, then the pose landmark model on MediaPipe's region around it): the same landmarks, 3D
    ones included, as MediaPipe Pose on the crop, to float32's rounding (Pose's smoothing stage, off for photos,
    still passes them through arithmetic: 1-2 units in the last place), and nobody where Pose finds nobody."""
    from bodycapture.keypoints.mediapipe import CROP_SCALES, _import_mediapipe, person_crop
    from bodycapture.quiet import native_stderr_silenced

    def values(landmarks):  # x, y, z, visibility (Pose's smoothing stage drops the presence field)
        return None if landmarks is None else np.array([[p.x, p.y, p.z, p.visibility] for p in landmarks.landmark])

    with native_stderr_silenced():
        pose = _import_mediapipe().solutions.pose.Pose(static_image_mode=True, model_complexity=1)
    outcomes = []
    try:
        for name in ("coco_338.jpg", "coco_488.jpg"):
            image = read_image(IMAGES / name)
            seeds = detector._get_seeds()(image)
            for i, seed in enumerate(seeds):
                others = [s.face for j, s in enumerate(seeds) if j != i]
                for scale in CROP_SCALES:
                    crop, x0, y0, side = person_crop(image, seed, others, scale)
                    mine = detector._pose_of_image(crop, x0, y0, side, side)
                    with native_stderr_silenced():
                        theirs = pose.process(crop)
                    assert (mine is None) == (theirs.pose_landmarks is None)
                    if mine is not None:
                        np.testing.assert_allclose(values(mine.landmarks), values(theirs.pose_landmarks), rtol=0,
                                                   atol=2e-7)
                        np.testing.assert_allclose(mine.world[:, :3], values(theirs.pose_world_landmarks)[:, :3],
                                                   rtol=0, atol=2e-7)
                    outcomes.append(mine is not None)
    finally:
        pose.close()
    assert sum(outcomes) >= 4 and not all(outcomes), outcomes


def test_no_person_is_an_empty_result_not_an_error(detector, tmp_path):
    empty = detector(np.full((240, 320, 3), 127, np.uint8))
    assert empty.num_people == 0 and empty.image_size == (240, 320)
    from PIL import Image

    Image.new("RGB", (320, 240), (90, 90, 90)).save(tmp_path / "wall.jpg")
    assert cli_main(["detect", str(tmp_path / "wall.jpg"), "--out", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "wall_keypoints.json").read_text())
    assert data["people"] == []


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    img = Image.new("RGB", (60, 40), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (60, 40, 3)


def test_images_of_more_than_8_bits_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    grey8 = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (20, 1))  # (20, 64) a ramp
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")  # 16-bit PNG, 0..65535
    Image.fromarray(grey8.astype(np.float32) / 255).save(tmp_path / "unit.tif")  # float TIFF in [0, 1]
    Image.fromarray(grey8.astype(np.int32)).save(tmp_path / "ints.tif")  # 32-bit integers in 0..255
    for name in ("sixteen.png", "unit.tif", "ints.tif"):
        image = read_image(tmp_path / name)
        assert image.shape == (20, 64, 3) and image.dtype == np.uint8, name
        assert np.abs(image[..., 0].astype(int) - grey8).max() <= 1, name  # Pillow's own conversion clipped to 255
        assert (image[..., 0] == image[..., 2]).all()


def test_a_very_large_photo_is_detected_scaled_down_and_its_points_scaled_back(monkeypatch):
    from PIL import Image

    from bodycapture.keypoints import mediapipe

    photo = read_image(IMAGES / "coco_623.jpg")  # 500 x 375
    small = np.asarray(Image.fromarray(photo).resize((300, 400), Image.LANCZOS, reducing_gap=3.0))
    detector = MediaPipeDetector()
    reference = detector(small)  # what the detector reads in the scaled copy, in its pixels
    monkeypatch.setattr(mediapipe, "MAX_DETECT_SIDE", 400)  # so that this photo counts as very large
    found = detector(photo)
    assert found.image_size == (500, 375) and found.num_people == reference.num_people >= 1
    factor = np.array([375 / 300, 500 / 400])
    np.testing.assert_allclose(found.points[..., :2], reference.points[..., :2] * factor, rtol=1e-6)
    np.testing.assert_array_equal(found.points[..., 2], reference.points[..., 2])
    np.testing.assert_allclose(found.boxes, reference.boxes * np.tile(factor, 2), rtol=1e-6)
    box = mediapipe.keypoint_box(found.points[0])  # the tallest, in the photo's pixels
    height = box[3] - box[1]
    assert height > 300  # min_height in pixels means the photo's pixels, not the scaled copy's (4/5 of them)
    assert MediaPipeDetector(min_height=height - 10)(photo).num_people == 1
    assert MediaPipeDetector(min_height=height + 10)(photo).num_people == 0


def test_cli_detect_writes_openpose_json_and_pictures(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coco_294.jpg", "coco_569.jpg"):
        (folder / name).write_bytes((IMAGES / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"not an image")
    assert cli_main(["detect", str(folder), "--out", str(tmp_path / "kp"), "--show"]) == 1  # one bad image
    kp = read_keypoints(tmp_path / "kp" / "coco_294_keypoints.json")
    assert kp.num_people == 1 and kp.world is not None
    assert (tmp_path / "kp" / "coco_569_rendered.png").stat().st_size > 1000
    assert not (tmp_path / "kp" / "broken_keypoints.json").exists()
    assert not [p for p in (tmp_path / "kp").iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_open_model_keypoints_are_where_the_detector_puts_them(detector):
    """Render the open model's frontal T-pose, detect it, and compare with its projected keypoints."""
    model = bodycapture.load_model(dtype=torch.float64)
    out = model()
    vertices = out.vertices[0].numpy()
    view = OrthoView.fit(vertices, (1000, 1000), margin=0.05)
    image, _ = render_orthographic(vertices, model.faces, view, background=0.35)
    found = detector(image)
    assert found.num_people == 1
    detected = found.points[0]
    projected = view.project(KeypointRegressor(model)(out)[0].numpy())
    height_px = (vertices[:, 1].max() - vertices[:, 1].min()) * view.scale
    report = []
    for group, idx in GROUPS.items():
        ok = detected[idx, 2] > 0
        if not ok.any():
            report.append(f"{group}: not detected")
            continue
        err = np.linalg.norm(detected[idx][ok, :2] - projected[idx][ok], axis=1) / height_px * 100
        report.append(f"{group}: median {np.median(err):.2f}% max {err.max():.2f}% of height ({ok.sum()} points)")
        assert np.median(err) < 4.0, group
    print("\n".join(report))
    assert (detected[:25, 2] > 0).sum() >= 21 and (detected[FACE, 2] > 0).all()


def test_confidences_follow_the_measured_calibration(detector):
    import json

    from bodycapture.keypoints.mediapipe import CALIBRATION, VISIBILITY_BINS, calibrate

    measured = json.loads((Path(__file__).resolve().parents[1] / "docs" / "detector_calibration.json").read_text())
    by_vis = measured["body_confidence_by_visibility"]
    assert CALIBRATION["body_confidence"] == pytest.approx([by_vis[str(b)] for b in VISIBILITY_BINS[:-1]], abs=0.01)
    assert CALIBRATION["hands"] == pytest.approx(measured["confidence"]["hands"], abs=0.01)
    raw = np.zeros((1, 135, 3))
    raw[0, :25, 2] = np.linspace(0.05, 1.0, 25)
    raw[0, 30, 2] = 1.0
    cal = calibrate(raw)
    assert (np.diff(cal[0, :25, 2]) >= 0).all()  # more visible, more confident
    assert cal[0, 30, 2] == CALIBRATION["hands"] and cal[0, 31, 2] == 0
    with MediaPipeDetector(raw_visibility=True) as raw_detector:
        raw_kp = raw_detector(IMAGES / "coco_569.jpg")
    kp = detector(IMAGES / "coco_569.jpg")
    np.testing.assert_allclose(calibrate(raw_kp.points), kp.points)
