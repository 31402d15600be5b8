"""The capture pipeline: every person found, the library API and the CLI writing the same results,
progress on stderr only, bad photos reported one line each while the rest runs, atomic result folders."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bodycapture
from bodycapture.cli import main
from bodycapture.errors import BodyCaptureError
from bodycapture.io.results import ResultExistsError, clean_stale_staging, result_folder
from bodycapture.keypoints.layout import BODY_25
from bodycapture.keypoints.openpose import people_file, read_openpose, write_openpose, write_people
from bodycapture.keypoints.person_seeds import PersonSeed, edge_tiles, merge_seeds, tiles
from bodycapture.keypoints.types import ImageKeypoints
from bodycapture.pipeline import capture, find_images, result_names
from conftest import quick_config

DATA = Path(__file__).resolve().parent / "data"
IMAGES = DATA / "images"
LSP = DATA / "openpose" / "lsp_im1010.jpg"
LSP_JSON = DATA / "openpose" / "lsp_im1010_keypoints.json"


# ---------------------------------------------------------------------------------------------------
# detection of every person (MediaPipe)


@pytest.fixture(scope="module")
def detector():
    from bodycapture.keypoints.mediapipe import MediaPipeDetector

    with MediaPipeDetector() as det:
        yield det


@pytest.mark.detector
def test_group_photo_yields_all_its_people(detector):
    kp = detector(IMAGES / "coco_328.jpg")  # three cadets on a bench (tests/data/people_counts.json)
    assert kp.num_people == 3
    heights = kp.boxes[:, 3] - kp.boxes[:, 1]
    assert (np.diff(heights) <= 0).all()  # ordered by size, tallest first
    assert kp.scores.shape == (3,) and kp.visibility.shape == (3, 25) and kp.world.shape == (3, 25, 4)
    centres = np.sort((kp.boxes[:, 0] + kp.boxes[:, 2]) / 2)
    assert np.diff(centres).min() > 80  # three different people, side by side
    assert detector.__class__(max_people=2)(IMAGES / "coco_328.jpg").num_people == 2


def _body_distance(a: np.ndarray, b: np.ndarray) -> float:
    seen = (a[:25, 2] > 0) & (b[:25, 2] > 0)
    return float(np.median(np.linalg.norm(a[:25, :2][seen] - b[:25, :2][seen], axis=1)))


@pytest.mark.detector
def test_composite_of_two_photos_yields_one_person_per_half(detector):
    left = np.asarray(Image.open(IMAGES / "coco_623.jpg").convert("RGB"))  # 375 x 500, one woman
    right = np.asarray(Image.open(IMAGES / "coco_569.jpg").convert("RGB").resize((667, 500)))  # one woman
    composite = np.concatenate([left, right], 1)
    both = detector(composite)
    assert both.num_people == 2
    halves = (both.boxes[:, 0] + both.boxes[:, 2]) / 2 > left.shape[1]
    assert sorted(halves.tolist()) == [False, True]
    for image, on_right, shift in ((left, False, 0), (right, True, left.shape[1])):
        alone = detector(image)
        assert alone.num_people == 1
        person = both.points[np.nonzero(halves == on_right)[0][0]].copy()
        person[person[:, 2] > 0, 0] -= shift
        height = alone.boxes[0, 3] - alone.boxes[0, 1]
        distance = _body_distance(person, alone.points[0])
        print(f"median body point distance {distance:.1f} px for a person {height:.0f} px tall")
        # each crop is centred on that image's own person detection, so Holistic sees slightly different
        # pixels: measured 7.8 px (2 %) for the 405 px woman, under 2 % for the other
        assert distance < 0.03 * height


@pytest.mark.detector
def test_a_close_up_is_one_person_seeded_by_the_face(detector):
    """A head-and-shoulders close-up (cut from coco_294, 3x): the face detector seeds it, and the person
    found from several seeds is one person (tiles used to add two more, measured)."""

    image = Image.open(IMAGES / "coco_294.jpg").convert("RGB").crop((90, 90, 230, 260))
    close_up = np.asarray(image.resize((image.width * 3, image.height * 3)))
    faces = detector._get_seeds()._faces(close_up)
    assert len(faces) == 1
    kp = detector(close_up)
    assert kp.num_people == 1
    nose = kp.points[0, BODY_25.index("Nose"), :2]
    x0, y0, x1, y1 = faces[0].face
    assert x0 <= nose[0] <= x1 and y0 <= nose[1] <= y1


@pytest.mark.detector
def test_nobody_in_a_blank_image(detector):
    assert detector(np.full((240, 320, 3), 90, np.uint8)).num_people == 0


def test_tiles_cover_the_image():
    for h, w in ((480, 640), (218, 640), (640, 520), (100, 100)):
        covered = np.zeros((h, w), bool)
        for x, y, side in tiles(h, w, 0.5):
            assert 0 <= x and 0 <= y and x + side <= w and y + side <= h
            covered[y : y + side, x : x + side] = True
        assert covered.all()


def test_a_panorama_is_tiled_as_the_row_of_photos_it_holds():
    from bodycapture.keypoints.person_seeds import MAX_TILES, WIDE_PHOTOS, WIDE_RATIO

    photo = tiles(218, 640)  # coco_357's shape: under WIDE_RATIO, the tiles of half its height
    assert 640 / 218 < WIDE_RATIO and photo[0][2] == 109 and len(photo) <= MAX_TILES
    for w in (1920, 218 * 6):  # wider: tiles of the same size, their number in proportion to the width
        wide = tiles(218, w)
        assert wide[0][2] == 109 and MAX_TILES < len(wide) <= MAX_TILES * w / 218 / WIDE_RATIO
        assert sorted(tiles(w, 218)) == sorted((y, x, side) for x, y, side in wide)  # a tall image: turned
    strip = tiles(100, 20000)  # a strip: at most WIDE_PHOTOS photos' worth, once the tiles reach the full height
    assert strip[0][2] == 100 and len(strip) <= WIDE_PHOTOS * MAX_TILES  # they overlap less, still cover it
    covered = np.zeros(20000, bool)
    for x, y, side in strip:
        assert y == 0 and 0 <= x <= 20000 - side
        covered[x : x + side] = True
    assert covered.all()
    from bodycapture.keypoints.person_seeds import MIN_TILE_SIDE, edge_tiles

    assert tiles(MIN_TILE_SIDE - 1, 2000) == [] and edge_tiles(10, 8000) == []  # a line of pixels: no tiles
    assert all(side >= MIN_TILE_SIDE for _, _, side in tiles(40, 8000) + tiles(50, 50))


@pytest.mark.detector
def test_a_panorama_of_small_people_is_searched_as_finely_as_its_pieces(detector):
    """coco_357 three times side by side (the middle one mirrored; 1920 x 218, 21 players): with the tile
    cap of a single photo its tiles grew to 158 px and 12 players were found; searched as three photos, 16
    or more (19 when measured), at least five in each third."""
    from bodycapture.keypoints.mediapipe import read_image

    image = read_image(IMAGES / "coco_357.jpg")
    panorama = np.ascontiguousarray(np.concatenate([image, image[:, ::-1], image], 1))
    kp = detector(panorama)
    assert kp.num_people >= 16
    thirds = np.bincount(((kp.boxes[:, 0] + kp.boxes[:, 2]) / 2 // 640).astype(int), minlength=3)
    assert (thirds >= 5).all()


def test_thorough_search_adds_a_finer_level_of_tiles(monkeypatch):
    from bodycapture.keypoints.person_seeds import PersonSeedDetector

    calls = {}
    for thorough in (False, True):
        seen = []
        detector = PersonSeedDetector(thorough=thorough, faces=False, workers=1)  # the calls in order

        def run(image, x, y, worker=0, scale=1.0, threshold=None, seen=seen):
            seen.append(image.shape[:2])  # a tile
            return []

        def run_both(image, x, y, worker=0, scale=1.0, low=None, mirrored=False, seen=seen):
            seen.append(image.shape[:2])  # the whole image: one run for the wheel's and the doubtful detections
            return [], []

        monkeypatch.setattr(detector, "_run", run)
        monkeypatch.setattr(detector, "_run_both", run_both)
        detector(np.zeros((480, 640, 3), np.uint8))
        calls[thorough] = seen
    # the whole image once, the tiles, and the tiles across the left and right edges
    assert calls[False][0] == (480, 640) and (480, 640) not in calls[False][1:]
    assert len(calls[False]) == 1 + len(tiles(480, 640, 0.5)) + len(edge_tiles(480, 640, 0.5))
    finer = [shape for shape in calls[True] if shape[0] == 160]  # a third of the short side
    assert len(finer) == len(tiles(480, 640, 1 / 3, max_tiles=60)) and len(calls[True]) == len(calls[False]) + len(finer)


def test_parallel_jobs_keep_their_order_and_a_failure_waits_for_the_other_worker():
    """PersonSeedDetector.parallel: each worker takes the next job when free; results come in job order; when a
    job fails, its exception is raised only once no worker is still running a job (a worker's graphs run one
    image at a time, and the caller may go on to the next photo), and no job starts after the failure."""
    import threading
    import time

    from bodycapture.keypoints.person_seeds import PersonSeedDetector

    pool = PersonSeedDetector(workers=2)
    try:
        slow = [0.03, 0.0, 0.0, 0.02, 0.0, 0.01]
        assert pool.parallel([lambda k, i=i, t=t: time.sleep(t) or i for i, t in enumerate(slow)]) == list(range(6))
        running, started, lock = [0], [], threading.Lock()

        def job(i: int, worker: int):
            with lock:
                running[0] += 1
                started.append(i)
            try:
                if i == 1:
                    raise ValueError("job 1")
                time.sleep(0.2 if i == 0 else 0.01)
            finally:
                with lock:
                    running[0] -= 1

        with pytest.raises(ValueError, match="job 1"):
            pool.parallel([lambda k, i=i: job(i, k) for i in range(20)])
        assert running[0] == 0  # the slow job 0 had finished when the failure was raised
        assert sorted(started) == [0, 1]  # job 0 on one worker, job 1 on the other; nothing after the failure
    finally:
        pool.close()


def test_tile_search_in_two_threads_finds_the_same_seeds():
    """Two worker threads, each with its own detector graph, search the windows in parallel and give the
    seeds of one worker, in the same order."""
    from bodycapture.keypoints.mediapipe import read_image
    from bodycapture.keypoints.person_seeds import PersonSeedDetector

    image = read_image(IMAGES / "coco_328.jpg")
    found = {}
    for workers in (1, 2):
        detector = PersonSeedDetector(workers=workers)
        try:
            found[workers] = detector(image)
        finally:
            detector.close()
    assert len(found[1]) >= 3  # three seated cadets
    assert [s.score for s in found[2]] == [s.score for s in found[1]]
    np.testing.assert_allclose(np.stack([s.hip for s in found[2]]), np.stack([s.hip for s in found[1]]))


@pytest.mark.detector
@pytest.mark.parametrize("name, people", [("coco_544.jpg", 6), ("coco_257.jpg", 7)])
def test_people_read_on_two_threads_are_the_people_read_on_one(name, people):
    """Holistic's readings of the seeds' own regions, the fallbacks of the seeds whose region failed (crops,
    two confirming regions) and the hands and faces are made on the worker threads, each with its own graphs
    (MediaPipeDetector._people_of_seeds, _person_by_fallbacks, _completed): the same people, point for point,
    as on one thread. coco_544: six people, two of them small and half hidden; coco_257: four of its seven
    found through fallbacks."""
    from bodycapture.keypoints.mediapipe import MediaPipeDetector

    found = {}
    for workers in (1, 2):
        with MediaPipeDetector(workers=workers) as detector:
            found[workers] = detector(IMAGES / name)
            assert len(detector._by_region) == workers
    assert found[1].num_people == found[2].num_people == people
    np.testing.assert_array_equal(found[2].points, found[1].points)
    np.testing.assert_array_equal(found[2].world, found[1].world)


def test_worker_and_thread_counts_follow_the_cores_this_process_may_use(monkeypatch):
    import os

    from bodycapture.cpus import usable_cores
    from bodycapture.keypoints.person_seeds import default_workers
    from bodycapture.pipeline import choose_threads

    for cores, workers, threads in (({0}, 1, 1), ({0, 1}, 2, 1), (set(range(8)), 2, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cores=cores: cores, raising=False)
        assert (usable_cores(), default_workers(), choose_threads()) == (len(cores), workers, threads)


def test_a_single_photo_is_detected_on_one_thread_and_a_folder_on_the_default():
    """A single photo's detection runs beside the model's loading (one core's work): one detector thread
    (pipeline.detection_job); several photos or a clip keep the default, and a caller's own choice stands.
    That the readings are the same on one thread and on two is tested above."""
    from bodycapture.pipeline import detection_job

    limits = {"max_people": None, "min_height": 0.1, "thorough": False}
    assert detection_job([Path("a.jpg")], limits, None)["detector"] == {**limits, "workers": 1}
    assert detection_job([Path("a.jpg"), Path("b.jpg")], limits, None)["detector"] == limits
    assert detection_job([], limits, None, clip={"source": "clip.mp4"})["detector"] == limits
    assert detection_job([Path("a.jpg")], {**limits, "workers": 2}, None)["detector"]["workers"] == 2
    assert limits == {"max_people": None, "min_height": 0.1, "thorough": False}  # the caller's dict untouched


@pytest.mark.detector
def test_a_person_the_detector_doubts_is_found_after_a_second_look(detector):
    """coco_257's man with a stroller, seen from behind in a cap, scores 0.30-0.47 at full frame (under the
    detector's 0.5): without the second look nobody is found there, with it he is, his body down to the knees at least."""
    from bodycapture.keypoints.mediapipe import read_image
    from bodycapture.keypoints.person_seeds import PersonSeedDetector

    image = read_image(IMAGES / "coco_257.jpg")
    near = lambda hip: abs(hip[0] - 180) < 40 and abs(hip[1] - 420) < 40  # noqa: E731  his hips, by eye
    without = PersonSeedDetector(doubtful_score=None)
    try:
        assert not any(near(s.hip) for s in without(image))
    finally:
        without.close()
    kp = detector(image)
    boxes = [b for b in kp.boxes if b[0] < 180 < b[2] and b[1] < 420 < b[3]]
    assert len(boxes) == 1 and boxes[0][3] - boxes[0][1] > 0.15 * image.shape[0]


def test_second_look_confirms_a_person_where_there_is_one_and_nobody_elsewhere():
    """A confident seed made doubtful is confirmed at the same place (the crop's pixels mapped back into
    the photo's); the same seed moved onto a blank photo is not."""
    from bodycapture.keypoints.mediapipe import read_image
    from bodycapture.keypoints.person_seeds import PersonSeedDetector

    image = read_image(IMAGES / "coco_564.jpg")
    seeds = PersonSeedDetector(workers=1)
    try:
        player = seeds(image)[0]  # the tennis player, 0.99
        doubtful = PersonSeed(0.4, player.face, player.hip + 0.1 * player.radius, player.radius, player.keypoints)
        again = seeds._recheck(image, doubtful)
        assert again is not None and again.score >= 0.5
        assert np.linalg.norm(again.hip - player.hip) < 0.1 * player.radius
        assert abs(again.radius - player.radius) < 0.2 * player.radius
        assert seeds._recheck(np.full_like(image, 90), doubtful) is None
    finally:
        seeds.close()


def test_tiles_near_are_the_finer_tiles_centred_in_a_small_persons_widened_region():
    from bodycapture.keypoints.person_seeds import tiles_near

    person = PersonSeed(0.9, np.array([290, 330, 300, 340.0]), np.array([300.0, 380.0]), 40.0)  # region 250-350
    every = tiles(480, 640, 1 / 3, max_tiles=60)
    side = every[0][2]
    centres = lambda ts: {(x + side / 2, y + side / 2) for x, y, side in ts}  # noqa: E731
    for margin in (0.0, 0.25):
        m = margin * side
        near = tiles_near(480, 640, [person], 1 / 3, 60, margin=margin)
        inside = {c for c in centres(every) if 250 - m < c[0] < 350 + m and 330 - m < c[1] < 430 + m}
        assert near and set(near) <= set(every) and centres(near) == inside
    assert len(tiles_near(480, 640, [person], 1 / 3, 60, margin=0.25)) > len(tiles_near(480, 640, [person], 1 / 3, 60, margin=0))
    assert tiles_near(480, 640, [], 1 / 3, 60) == []


@pytest.mark.detector
def test_confident_people_are_read_from_the_wheels_detector_not_the_low_threshold_one():
    """The low-threshold search's weighted non-maximum suppression averages weaker detections into the
    confident ones: coco_564's player moved by 0.04 px and Holistic then lost his face. His seed is the
    wheel's own detection, bit for bit, and his face is read."""
    from bodycapture.keypoints.layout import GROUPS
    from bodycapture.keypoints.mediapipe import MediaPipeDetector, read_image
    from bodycapture.keypoints.person_seeds import DOUBTFUL_SCORE, PersonSeedDetector

    image = read_image(IMAGES / "coco_564.jpg")
    detector = PersonSeedDetector(tile_fraction=None, faces=False, workers=1)
    try:
        (seed,) = detector(image)
        (wheel,) = detector._run(image, 0, 0)
        (low,) = detector._run(image, 0, 0, threshold=DOUBTFUL_SCORE)
    finally:
        detector.close()
    assert np.array_equal(seed.hip, wheel.hip) and np.array_equal(seed.keypoints, wheel.keypoints)
    assert not np.array_equal(low.hip, wheel.hip)
    with MediaPipeDetector() as mp_detector:
        found = mp_detector(image)
    assert (found.points[0, GROUPS["face"], 2] > 0).sum() > 40


@pytest.mark.detector
def test_our_detector_graph_gives_the_wheels_detections_and_the_low_thresholds_from_one_run():
    """detection_graph_text's "detections" are the wheel's PoseDetectionCpu's, bit for bit, and its "doubtful" those
    of a graph decoding at the low threshold alone, on photos and their tiles (where the detector finds
    people and where it finds nobody)."""
    from bodycapture.keypoints.mediapipe import read_image
    from bodycapture.keypoints.person_seeds import (DOUBTFUL_SCORE, WHEEL_GRAPH, detection_graph_text,
                                                    graph_from_text, tiles)
    from bodycapture.quiet import native_stderr_silenced

    def values(detections):
        return [(tuple(d.score), str(d.location_data)) for d in detections or []]

    with native_stderr_silenced():
        wheel = graph_from_text(WHEEL_GRAPH)
        ours = graph_from_text(detection_graph_text(DOUBTFUL_SCORE))
        low_only = graph_from_text(detection_graph_text(DOUBTFUL_SCORE).replace(
            'output_stream: "detections"\n', "", 1))  # its "detections" branch unread
        counts = {"inputs": 0, "wheel": 0, "doubtful": 0}
        try:
            for name in ("coco_564.jpg", "coco_488.jpg", "coco_257.jpg"):
                image = read_image(IMAGES / name)
                h, w = image.shape[:2]
                for x, y, side in [(0, 0, None)] + tiles(h, w, 0.5, max_tiles=48):
                    crop = np.ascontiguousarray(image if side is None else image[y : y + side, x : x + side])
                    both = ours.process({"image": crop})
                    mine, doubtful = values(both.detections), values(both.doubtful)
                    assert mine == values(wheel.process({"image": crop}).detections)
                    assert doubtful == values(low_only.process({"image": crop}).doubtful)
                    counts["inputs"] += 1
                    counts["wheel"] += len(mine) > 0
                    counts["doubtful"] += len(doubtful) > len(mine)
        finally:
            for graph in (wheel, ours, low_only):
                graph.close()
    assert counts["inputs"] > 30 and counts["wheel"] > 5 and counts["doubtful"] > 0, counts


def _seeds_with(monkeypatch, photo: str, setting: str, values: tuple) -> dict:
    """{value: the person seeds of tests/data/images/PHOTO} with person_seeds.SETTING set to each value (no
    search across the photo's edges, which sees coco_357's umpire too)."""
    from bodycapture.keypoints import person_seeds
    from bodycapture.keypoints.mediapipe import read_image

    image = read_image(IMAGES / photo)
    found = {}
    for value in values:
        monkeypatch.setattr(person_seeds, setting, value)
        detector = person_seeds.PersonSeedDetector(edges=False)  # the tiles inside the photo only
        try:
            found[value] = detector(image)
        finally:
            detector.close()
    return found


@pytest.mark.detector
def test_a_group_of_small_people_is_searched_with_finer_tiles(monkeypatch):
    """coco_257's food truck: people 65-80 px tall, shoulder to shoulder. The finer tiles around the small
    people found there add a person that the half-side tiles do not separate."""
    from bodycapture.keypoints.person_seeds import SMALL_PERSON

    at_truck = lambda seeds: [s for s in seeds if 280 < s.hip[0] < 340 and 340 < s.hip[1] < 400]  # noqa: E731
    found = _seeds_with(monkeypatch, "coco_257.jpg", "SMALL_PERSON", (0.0, SMALL_PERSON))
    assert len(at_truck(found[SMALL_PERSON])) > len(at_truck(found[0.0])) >= 1


@pytest.mark.detector
def test_small_peoples_finer_tiles_reach_past_their_regions(monkeypatch):
    """coco_357's home-plate umpire (about 40 px tall, half hidden behind the catcher): the finer tiles
    centred in the batter's region miss him; those centred within a quarter tile of it find him."""
    from bodycapture.keypoints.person_seeds import NEAR_MARGIN

    umpire = lambda seeds: [s for s in seeds if 585 < s.hip[0] < 625 and 160 < s.hip[1] < 200]  # noqa: E731
    found = _seeds_with(monkeypatch, "coco_357.jpg", "NEAR_MARGIN", (0.0, NEAR_MARGIN))
    assert NEAR_MARGIN > 0 and not umpire(found[0.0]) and len(umpire(found[NEAR_MARGIN])) == 1


def test_merge_seeds_keeps_the_best_of_overlapping_ones():
    def seed(score, x):
        return PersonSeed(score, np.array([x, 10, x + 20, 30.0]), np.array([x + 10, 100.0]), 50.0)

    kept = merge_seeds([seed(0.6, 0), seed(0.9, 2), seed(0.7, 300)])
    assert [s.score for s in kept] == [0.9, 0.7]


def test_people_side_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform(1, 100, (2, 135, 3))
    kp = ImageKeypoints(points, (120, 160), rng.normal(size=(2, 25, 4)), "x", boxes=rng.uniform(0, 99, (2, 4)),
                        scores=[0.9, 0.6], visibility=rng.uniform(0, 1, (2, 25)))
    file = tmp_path / "photo_keypoints.json"
    write_openpose(file, kp)
    write_people(people_file(file), kp)
    assert people_file(file).name == "photo_people.json"
    back = read_openpose(file)
    np.testing.assert_allclose(back.boxes, kp.boxes)
    np.testing.assert_allclose(back.scores, kp.scores)
    np.testing.assert_allclose(back.visibility, kp.visibility)
    np.testing.assert_allclose(back.world, kp.world, atol=1e-5)
    people_file(file).write_text(json.dumps({"people": [{"box": [1, 2, 3]}, {"box": [1, 2, 3]}]}))
    with pytest.raises(BodyCaptureError, match="photo_people.json.*'box' must be 4"):
        read_openpose(file)


# ---------------------------------------------------------------------------------------------------
# the library pipeline and the CLI


def test_inputs_and_names(tmp_path):
    (tmp_path / "person.jpg").write_bytes(b"x")
    (tmp_path / "person.png").write_bytes(b"x")
    (tmp_path / "other.jpg").write_bytes(b"x")
    (tmp_path / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    paths = find_images(tmp_path)
    assert [p.name for p in paths] == ["other.jpg", "person.jpg", "person.png"]
    assert result_names(paths) == ["other", "person_jpg", "person_png"]
    assert result_names([paths[0], paths[0]]) == ["other_jpg", "other_jpg_2"]
    with pytest.raises(BodyCaptureError, match="no such file"):
        find_images(tmp_path / "missing.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BodyCaptureError, match="no images"):
        find_images(empty)
    (empty / "day1").mkdir()
    (empty / "day1" / "a.jpg").write_bytes(b"x")
    with pytest.raises(BodyCaptureError, match=r"no images.*not searched: 1 subfolder\(s\) with images \(day1\)"):
        find_images(empty)  # photos only one level down: the error says where they are


def test_subfolders_with_photos_are_named_not_searched(tmp_path, caplog):
    (tmp_path / "top.jpg").write_bytes(b"x")
    for name in ("b", "a", ".cache"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "inner.png").write_bytes(b"x")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="bodycapture.pipeline"):
        assert [p.name for p in find_images(tmp_path)] == ["top.jpg"]
    assert "not searched: 2 subfolder(s) with images (a, b)" in caplog.text


def test_options_are_checked_before_any_work(tmp_path):
    with pytest.raises(BodyCaptureError, match="batch_images"):
        capture(LSP, out=tmp_path, batch_images=0)
    with pytest.raises(BodyCaptureError, match="min_height"):
        capture(LSP, out=tmp_path, min_height=float("nan"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(BodyCaptureError, match="not a folder"):
        capture(LSP, out=tmp_path / "file", keypoints=LSP_JSON)


@pytest.fixture(scope="module")
def api_and_cli_results(tmp_path_factory):
    """The same photo and OpenPose file through the API, here, and through the command, in a fresh process as
    a user starts it (fitted once per module). This process loaded numpy before `bodycapture` (BLAS with a
    thread per core), the command pins it to one thread: the fits must not see the difference."""
    root = tmp_path_factory.mktemp("same")
    report = capture(LSP, out=root / "api", keypoints=LSP_JSON, progress=False, threads=1)
    run = subprocess.run([sys.executable, "-m", "bodycapture", "fit", str(LSP), "--keypoints", str(LSP_JSON), "--out",
                          str(root / "cli"), "--threads", "1", "-q"], capture_output=True, text=True, timeout=600,
                         env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
    assert run.returncode == 0, run.stderr[-2000:]
    return report, root


def test_api_and_cli_write_the_same_files(api_and_cli_results):
    report, root = api_and_cli_results
    assert report.ok and report.people_fitted == 1 and report.images[0].status == "done"
    api, cli = root / "api" / "lsp_im1010", root / "cli" / "lsp_im1010"
    assert sorted(p.name for p in api.iterdir()) == sorted(p.name for p in cli.iterdir())
    a, b = np.load(api / "params.npz"), np.load(cli / "params.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:  # bit for bit (NaN where a part was not seen), but the fit's wall time
        if key != "fit_seconds":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert report.images[0].residuals_px[0]["body"] < 30  # pixels: the fit explains the detections


def test_result_save_api(api_and_cli_results, tmp_path):
    """FitResult.save writes a result folder from keypoints already in hand."""
    from bodycapture.keypoints import read_keypoints

    kp = read_keypoints(LSP_JSON)
    kp.image_size = np.asarray(Image.open(LSP)).shape[:2]
    model = bodycapture.load_model()
    result = bodycapture.fit(kp, model, config=quick_config())
    folder = result.save(tmp_path / "mine", keypoints=kp)
    assert (folder / "params.npz").exists() and (folder / "overlay.png").exists()
    with pytest.raises(ResultExistsError):
        result.save(tmp_path / "mine")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.detector
def test_bad_photos_one_line_each_and_the_rest_runs(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (320, 240), (80, 80, 80)).save(photos / "nobody.png")
    for name in ("coco_623.jpg", "coco_569.jpg"):
        (photos / name).write_bytes((IMAGES / name).read_bytes())
    out = tmp_path / "out"
    (out / "coco_569").mkdir(parents=True)  # an existing result: skipped, not a failure
    (out / "coco_569" / "params.npz").write_bytes(b"old")
    code = main(["fit", str(photos), "--out", str(out), "--no-collision"])
    captured = capsys.readouterr()
    assert code == 1  # the broken photo failed
    err = [line for line in captured.err.splitlines() if line.startswith("bodycapture:")]
    assert len(err) == 3
    assert any("error:" in line and "broken.jpg" in line and "not a readable image" in line for line in err)
    assert any("nobody.png: no person found" in line for line in err)
    assert any("coco_569: exists, skipped" in line for line in err)
    assert "Traceback" not in captured.err
    lines = captured.out.strip().splitlines()  # stdout: the closing line only (progress is on stderr)
    assert len(lines) == 1 and "4 images" in lines[0] and "1 fitted" in lines[0] and str(out) in lines[0]
    assert (out / "coco_623" / "params.npz").exists() and (out / "coco_569" / "params.npz").read_bytes() == b"old"
    assert not (out / "broken").exists() and not (out / "nobody").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging folders or locks left

    # the same run again: everything that was written is skipped, which is not a failure
    assert main(["fit", str(photos / "coco_623.jpg"), "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.detector
def test_detect_writes_every_person_and_the_side_file(tmp_path, capsys):
    assert main(["detect", str(IMAGES / "coco_328.jpg"), "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "coco_328_keypoints.json").read_text())
    assert len(data["people"]) == 3
    side = json.loads((tmp_path / "coco_328_people.json").read_text())
    assert len(side["people"]) == 3 and len(side["people"][0]["visibility"]) == 25
    assert len(side["people"][0]["world_landmarks"]) == 25
    assert "3 people found" in capsys.readouterr().out
    assert read_openpose(tmp_path / "coco_328_keypoints.json").boxes.shape == (3, 4)


def test_cli_imports_neither_torch_nor_mediapipe_up_front():
    code = ("import sys, bodycapture, bodycapture.cli, bodycapture.pipeline, bodycapture.keypoints.openpose\n"
            "assert 'torch' not in sys.modules and 'mediapipe' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


# ---------------------------------------------------------------------------------------------------
# result folders: whole or not at all


def test_result_folder_is_atomic(tmp_path):
    target = tmp_path / "photo"
    with pytest.raises(RuntimeError):
        with result_folder(target) as staging:
            (staging / "params.npz").write_text("half")
            raise RuntimeError("killed while writing")
    assert not target.exists() and list(tmp_path.iterdir()) == []

    with result_folder(target) as staging:
        (staging / "a.txt").write_text("old")
    with pytest.raises(ResultExistsError, match="exists"):
        with result_folder(target):
            pass
    with result_folder(target, overwrite=True) as staging:
        (staging / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["photo"]


def test_a_result_being_written_by_another_run_is_skipped(tmp_path):
    target = tmp_path / "photo"
    (tmp_path / ".photo.lock").write_text(str(os.getppid()))  # a live process holds it
    with pytest.raises(ResultExistsError, match="another bodycapture run"):
        with result_folder(target):
            pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".photo.lock").write_text(dead.stdout.strip())  # a killed run's lock is taken over
    (tmp_path / f".photo.partial-{dead.stdout.strip()}-abcd1234").mkdir()
    assert clean_stale_staging(tmp_path) == 2
    with result_folder(target) as staging:
        (staging / "x").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo"]


def test_region_variant_scales_raises_and_stands_up_mediapipes_region():
    from bodycapture.keypoints.mediapipe import region_variant

    hip, radius = np.array([200.0, 300.0]), 50.0
    turned = np.array([[200.0, 300.0], [230.0, 260.0], [205.0, 250.0], [220.0, 240.0]])  # size point at 50 px, tilted
    seed = PersonSeed(0.6, np.array([190, 230, 210, 250.0]), hip, radius, turned)
    v = region_variant(seed, scale=0.8, rise=0.2, upright=False)
    np.testing.assert_allclose(v.hip, [200.0, 290.0])  # a fifth of the radius higher
    assert v.radius == pytest.approx(40.0)
    np.testing.assert_allclose(np.linalg.norm(v.keypoints[1] - v.keypoints[0]), 40.0)  # MediaPipe's size, x 0.8
    np.testing.assert_allclose(v.keypoints - v.hip, 0.8 * (turned - hip))  # same turn, same shape
    np.testing.assert_allclose(v.roi, [150.0, 240.0, 250.0, 340.0])  # 2.5 radii a side, about the new centre
    up = region_variant(seed, scale=1.0, rise=-0.2, upright=True)
    np.testing.assert_allclose(up.keypoints[:2], [[200.0, 310.0], [200.0, 260.0]])  # size point straight above
    np.testing.assert_allclose(seed.keypoints, turned)  # the seed itself untouched


@pytest.mark.detector
def test_people_the_pose_model_doubts_on_one_region_are_confirmed_on_two_others(monkeypatch):
    """coco_257's food truck: a man in black and a woman beside him have seeds, but the pose model scores
    them 0.07 and 0.12 present on MediaPipe's region (0.5 needed) and on our crops finds nobody; on two
    shifted, smaller, upright regions it finds both. One region alone would also take clutter for a person
    (coco_294: a hand holding a utensil); two must agree."""
    from bodycapture.keypoints import mediapipe as mp_keypoints

    def people(photo, variants):
        monkeypatch.setattr(mp_keypoints, "REGION_VARIANTS", variants)
        with mp_keypoints.MediaPipeDetector() as det:
            return det(mp_keypoints.read_image(IMAGES / photo))

    def at_truck(kp):  # hip centres of the people between the stroller man and the woman in red shorts (not
        # the woman in grey behind the man in black, at x 276: found by the look behind, test below)
        hips = kp.points[:, [BODY_25.index("RHip"), BODY_25.index("LHip")], :2].mean(1)
        return sorted(round(x) for x, y in hips if 195 < x < 268 and 340 < y < 400)

    default = mp_keypoints.REGION_VARIANTS
    assert at_truck(people("coco_257.jpg", ())) == []
    found = at_truck(people("coco_257.jpg", default))
    assert len(found) == 2 and found[1] - found[0] > 20  # two people, side by side
    assert people("coco_294.jpg", ((0.85, 0.2, False),)).num_people >= 2  # clutter, seen on one region
    assert people("coco_294.jpg", default).num_people == 1


def test_edge_tiles_straddle_the_left_and_right_edges_in_the_rows_of_the_tiles():
    for h, w in ((480, 640), (640, 520), (218, 640)):
        side = round(min(h, w) * 0.5)
        rows = sorted({y for _, y, _ in tiles(h, w, 0.5, max_tiles=1000)})
        edge = edge_tiles(h, w, 0.5)
        assert len(edge) == 2 * len(rows) and {s for _, _, s in edge} == {side}
        assert sorted({y for _, y, _ in edge}) == rows
        centres = sorted({x + side / 2 for x, _, _ in edge})
        assert centres[0] == pytest.approx(0, abs=0.5) and centres[1] == pytest.approx(w, abs=0.5)


@pytest.mark.detector
def test_a_person_cut_by_the_edge_is_found_in_tiles_across_it(detector):
    """coco_564's seated spectator, cut by the photo's right edge: the person detector fires on him in no
    tile that the photo holds, but does in a tile centred on the edge; his seed needs two regions'
    confirmation (mediapipe.REGION_VARIANTS), which it gets. The tennis player stays the first person."""
    from bodycapture.keypoints.mediapipe import MediaPipeDetector, read_image
    from bodycapture.keypoints.person_seeds import PersonSeedDetector

    image = read_image(IMAGES / "coco_564.jpg")
    h, w = image.shape[:2]
    seeds = PersonSeedDetector()
    try:
        found = seeds(image)
    finally:
        seeds.close()
    spectator = [s for s in found if s.needs_confirmation and s.hip[0] > 0.8 * w and s.hip[1] < 0.5 * h]
    assert spectator  # (two tiles may each see him: their readings are one person, below)
    kp = detector(image)
    assert kp.num_people == 2
    box = kp.boxes[1]
    assert box[0] > 0.8 * w and box[3] < 0.5 * h and box[3] - box[1] > 0.1 * h  # top right, over 10 % tall
    with MediaPipeDetector() as without:
        without._seeds = PersonSeedDetector(edges=False)
        alone = without(image)
    assert alone.num_people == 1
    np.testing.assert_allclose(alone.points[0], kp.points[0])


def test_uncovered_blobs_are_the_tall_mask_regions_that_no_found_person_covers():
    from bodycapture.keypoints.person_masks import COVER_PAD, MASK_THRESHOLD, uncovered_blobs

    prob = np.zeros((200, 300), np.float32)
    prob[20:120, 10:40] = 0.9  # a person nobody found: 100 px tall
    prob[30:110, 100:130] = 0.8  # a person found already (covered by a box)
    prob[150:170, 200:220] = 0.95  # too small
    prob[20:120, 250:280] = MASK_THRESHOLD  # not over the threshold
    covered = np.array([[104, 36, 126, 104.0]])  # the found person's keypoints, inside the blob's outline;
    assert COVER_PAD * 68 >= 6  # ...their box widened by COVER_PAD of its height covers the blob
    blobs = uncovered_blobs(prob, covered, min_height=50)
    assert len(blobs) == 1
    box, score = blobs[0]
    np.testing.assert_allclose(box, [10, 20, 40, 120])
    assert score == pytest.approx(0.9)
    assert len(uncovered_blobs(prob, np.zeros((0, 4)), min_height=50)) == 2  # nobody found: both people
    assert uncovered_blobs(prob, covered, min_height=101) == []


def test_blob_seeds_stand_upright_at_the_blobs_centre():
    from bodycapture.keypoints.person_masks import BLOB_RADII, blob_seeds

    seeds = blob_seeds(np.array([10, 20, 40, 120.0]), 0.7)
    assert [s.radius for s in seeds] == pytest.approx([r * 100 for r in BLOB_RADII])
    for s in seeds:
        np.testing.assert_allclose(s.hip, [25, 70])
        np.testing.assert_allclose(s.keypoints[1], [25, 70 - s.radius])  # the size point straight above
        assert s.needs_confirmation and s.score == 0.7


@pytest.mark.detector
def test_selfie_segmentation_windows_on_any_worker_give_the_same_probabilities():
    """Each worker thread segments windows with its own model (PersonMasks.segment): the windows read on two
    threads, each on its own model, put together (probabilities) equal the windows read one after another."""
    from concurrent.futures import ThreadPoolExecutor

    from bodycapture.keypoints.mediapipe import read_image
    from bodycapture.keypoints.person_masks import PersonMasks, probabilities

    image = read_image(IMAGES / "coco_357.jpg")
    windows = [(520, 100, 73), (560, 120, 73), (480, 110, 73), (0, 0, 73), (600, 180, 73)]  # the last cut by the edges
    masks = PersonMasks()
    try:
        a = masks(image, windows)
        masks.prepare(2)
        with ThreadPoolExecutor(2) as pool:
            parts = list(pool.map(lambda k: [masks.segment(image, w, k) for w in windows[k::2]], range(2)))
        b = probabilities(image.shape[:2], windows[0::2] + windows[1::2], parts[0] + parts[1])
        assert masks.segment(image, windows[-1]).shape == (218 - 180, 640 - 600)  # cut to the photo
    finally:
        masks.close()
    np.testing.assert_array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1 and a[:, :450].max() <= 1 and a[150:, 300:400].max() == 0  # nothing outside
    assert (a[160:200, 570:595] > 0.5).mean() > 0.3  # the catcher, crouched at home plate


@pytest.mark.detector
def test_a_person_the_person_detector_misses_is_found_in_the_segmentation_mask():
    """coco_357's crouched catcher (about 25 px tall in a 640 x 218 photo): the person detector fires on him
    in no crop (benchmarks/missed_people.py), but the selfie segmentation outlines him in the finer tiles
    around the small players, no one found covers the blob, and two regions of the pose model confirm him.
    (The look behind the people found, with them greyed out, finds him too: it is switched off here.)"""
    from bodycapture.keypoints.mediapipe import read_image

    image = read_image(IMAGES / "coco_357.jpg")
    catcher = lambda kp: [b for b in kp.boxes if 565 < (b[0] + b[2]) / 2 < 595 and 160 < (b[1] + b[3]) / 2 < 200]  # noqa: E731
    before, after = _detect_without_the_look_behind(image, masks=False), _detect_without_the_look_behind(image)
    assert not catcher(before) and len(catcher(after)) == 1
    assert after.num_people == before.num_people + 1


@pytest.mark.detector
def test_the_detector_on_a_mirrored_image_maps_its_detections_back():
    """PersonSeedDetector._run(mirrored=True) on a photo's mirror image sees the photo itself: its seeds are
    the photo's seeds mirrored, point for point."""
    from bodycapture.keypoints.mediapipe import read_image
    from bodycapture.keypoints.person_seeds import PersonSeedDetector

    image = read_image(IMAGES / "coco_328.jpg")
    w = image.shape[1]
    seeds = PersonSeedDetector(tile_fraction=None)
    try:
        plain = seeds._run(image, 0, 0)
        back = seeds._run(np.ascontiguousarray(image[:, ::-1]), 0, 0, mirrored=True)
    finally:
        seeds.close()
    assert len(plain) == len(back) >= 1
    for a, b in zip(plain, back):
        assert b.score == pytest.approx(a.score)
        np.testing.assert_allclose(b.keypoints[:, 0], w - a.keypoints[:, 0], atol=1e-3)
        np.testing.assert_allclose(b.keypoints[:, 1], a.keypoints[:, 1], atol=1e-3)
        np.testing.assert_allclose(b.face[[2, 1, 0, 3]] * [-1, 1, -1, 1] + [w, 0, w, 0], a.face, atol=1e-3)
        assert b.radius == pytest.approx(a.radius)


@pytest.mark.detector
def test_a_person_half_hidden_beside_a_small_person_found_is_found_on_a_closer_mirrored_look(detector):
    """coco_544's second man in the dugout, seated behind the first: one detection covers both in every
    tile, but the person detector on a mirrored square of BESIDE_SIDE x the first man's height sees him;
    two regions confirm him, and although his face is too small for face points and two thirds of his
    body lie inside his neighbour's, he is kept (the faceless-inside rule asks more of confirmed people)."""
    from bodycapture.keypoints.mediapipe import MediaPipeDetector, read_image

    image = read_image(IMAGES / "coco_544.jpg")
    seated = lambda kp: [b for b in kp.boxes if 35 < (b[0] + b[2]) / 2 < 55 and 260 < (b[1] + b[3]) / 2 < 290]  # noqa: E731
    with_beside = detector(image)
    # 6: also the man standing behind the dugout, found by the look behind (he needs no `beside`: test below)
    assert with_beside.num_people == 6 and len(seated(with_beside)) == 1
    with MediaPipeDetector() as without:
        without._get_seeds().beside = lambda *args, **kwargs: []  # neither look
        before = without(image)
    assert before.num_people == 4 and not seated(before)
    _assert_found_as_before(before, with_beside)


def _detect_without_the_look_behind(image, **options):
    """MediaPipeDetector(**options) on `image` with its look behind the people found switched off."""
    from bodycapture.keypoints.mediapipe import MediaPipeDetector

    with MediaPipeDetector(**options) as detector:
        detector._people_behind = lambda *args: []
        return detector(image)


def _assert_found_as_before(before, after):
    """Every person of the detection `before` is in `after`, with the same box and points."""
    for box, points in zip(before.boxes, before.points):
        same = np.flatnonzero(np.abs(after.boxes - box).max(1) < 1e-6)
        assert len(same) == 1
        np.testing.assert_allclose(after.points[same[0]], points)


@pytest.mark.detector
def test_a_person_behind_a_small_person_found_is_found_with_the_found_greyed_out(detector):
    """coco_257's woman in grey, her left half behind the man in black at the food truck: the person detector
    fires on her in no tile or crop of the photo, as he takes the detection; with every found person's
    keypoint box greyed out it does, on a square of BEHIND_SIDE x his height, and two regions confirm her on
    the greyed photo. Everyone found without the look is found as before, point for point."""
    from bodycapture.keypoints.mediapipe import read_image

    image = read_image(IMAGES / "coco_257.jpg")
    hip = lambda kp: kp.points[:, [BODY_25.index("RHip"), BODY_25.index("LHip")], :2].mean(1)  # noqa: E731
    behind = lambda kp: [h for h in hip(kp) if 268 < h[0] < 290 and 350 < h[1] < 380]  # noqa: E731
    found = detector(image)
    before = _detect_without_the_look_behind(image)
    assert not behind(before) and len(behind(found)) == 1
    assert found.num_people == before.num_people + 1
    box = found.boxes[np.flatnonzero((hip(found)[:, 0] > 268) & (hip(found)[:, 0] < 290))[0]]
    assert 55 < box[3] - box[1] < 80  # her whole height (65-80 px at the truck), not a part of her
    _assert_found_as_before(before, found)


def test_greyed_fills_the_boxes_clipped_to_the_image_and_leaves_the_rest_and_the_input():
    from bodycapture.keypoints.mediapipe import greyed

    image = np.full((40, 60, 3), 7, np.uint8)
    out = greyed(image, np.array([[10.5, 5.2, 20.1, 15.0], [-5, 30, 8, 99], [np.nan, 0, 1, 1]]))
    assert (image == 7).all()  # a copy
    mask = np.zeros((40, 60), bool)
    mask[5:15, 10:21] = True  # pixels the box touches (floor of the start, ceiling of the end)
    mask[30:40, 0:8] = True  # clipped to the image
    assert (out[mask] == 128).all() and (out[~mask] == 7).all()


def _reading(box, face: bool, score: float = 0.9, detected: bool = True):
    """A detector reading (MediaPipeDetector._reading) whose body points fill `box` (x0, y0, x1, y1)."""
    from bodycapture.keypoints.layout import FACE

    x0, y0, x1, y1 = box
    points = np.zeros((135, 3))
    rng = np.random.default_rng(int(x0 * 7 + y0))
    points[:25, 0] = rng.uniform(x0, x1, 25)
    points[:25, 1] = rng.uniform(y0, y1, 25)
    points[[0, 1], 0], points[[0, 1], 1] = (x0, x1), (y0, y1)  # the corners: the box is exactly `box`
    points[:25, 2] = 0.8
    if face:
        points[FACE, :2] = [(x0 + x1) / 2, y0 + 0.05 * (y1 - y0)]
        points[FACE, 2] = 0.85
    return points, None, points[:25, 2].copy(), score, detected


def test_a_faceless_body_over_a_taller_persons_box_is_that_person_read_twice(monkeypatch):
    """The duplicate rules (MediaPipeDetector._select): a faceless reading whose box coincides with a taller
    person's (IoU over SAME_BOX) is dropped, as one mostly inside them is; a faceless neighbour overlapping
    less, or a reading with a face, is a person of its own."""
    from bodycapture.keypoints.mediapipe import SAME_BOX, MediaPipeDetector

    det = MediaPipeDetector(min_height=10)
    from bodycapture.keypoints.mediapipe import CONTAINED, _inside
    from bodycapture.keypoints.person_seeds import box_iou

    boxes = np.array([[100, 100, 200, 300], [110, 120, 230, 290], [170, 120, 260, 290.0]])
    iou = box_iou(boxes, boxes)
    assert iou[0, 1] > SAME_BOX > iou[0, 2]
    assert _inside(boxes[1], boxes[0]) < CONTAINED  # not dropped as lying inside: as the same box
    taller, again, beside = _reading(boxes[0], face=True), _reading(boxes[1], face=False), _reading(boxes[2], face=False)
    kept = det._select([taller, again, beside], (400, 400), "test", 10.0)
    assert kept.num_people == 2
    np.testing.assert_allclose(kept.boxes, boxes[[0, 2]])
    assert det._select([taller, _reading(boxes[1], face=True)], (400, 400), "test", 10.0).num_people == 2
    monkeypatch.setattr("bodycapture.keypoints.mediapipe.SAME_BOX", 1.0)  # the rule switched off: three people
    assert det._select([taller, again, beside], (400, 400), "test", 10.0).num_people == 3


def test_a_detector_that_fails_after_the_last_photo_costs_a_warning_not_the_run(tmp_path, caplog):
    """The pipeline reads the detector's end (to give its cores to the last batch's fit); a failure there
    comes after every photo's keypoints and is logged, not raised."""
    import time

    from bodycapture.pipeline import CaptureOptions, ImageReport, Prepared, _run
    from conftest import make_model

    photo = tmp_path / "wall.jpg"

    def stream():
        yield photo, Prepared(photo, np.zeros((40, 30, 3), np.uint8), ImageKeypoints.empty((40, 30), str(photo)))
        raise BodyCaptureError("the detector process ended unexpectedly (exit code -11)")

    reports = [ImageReport(photo, "wall")]
    options = CaptureOptions(out=tmp_path / "out", progress=False)
    with caplog.at_level("WARNING", logger="bodycapture"):
        report = _run(stream(), reports, reports, make_model(), quick_config(), options, time.perf_counter())
    assert [r.status for r in report.images] == ["empty"]
    assert "exit code -11" in caplog.text
