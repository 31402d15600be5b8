"""The bundled detector: MediaPipe Holistic (0.10.21, whose wheel carries its models, so it runs offline),
converted into our OpenPose-style layout.

MediaPipe gives 33 body, 2 x 21 hand and 468 face landmarks for one person per image. We map them:
- body: BODY_25 from the 33 pose points; the neck and mid-hip (which MediaPipe lacks) are midpoints of
  the shoulders and hips; the small toes have no counterpart and stay undetected;
- hands: MediaPipe's 21 hand points are in OpenPose's order already;
- face: the widely used 468 -> iBUG-68 subset.
Confidences are calibrated (tools/calibrate_detector.py): the fitter weights squared residuals by
confidence^2, so a confidence proportional to 1 / the detector's measured error scale makes the data
term a weighted least squares. Body points map MediaPipe's visibility through a measured table; hand and
face points (no per-point score in MediaPipe) get their group's value. Points outside the image are
dropped, as OpenPose never reports them.
Only `model_complexity=1` works offline (the lite and heavy pose models are downloaded at run time).
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .layout import BODY, BODY_25, CONTOUR, FACE, FLIP, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND
from ..quiet import native_stderr_silenced
from ..io.images import IMAGE_SUFFIXES, read_image, scaled_to_fit  # noqa: F401  (read_image: re-exported)
from .types import ImageKeypoints, midpoint

__all__ = ["MediaPipeDetector", "detect", "read_image", "MEDIAPIPE_TO_IBUG68"]

log = logging.getLogger(__name__)

# MediaPipe FaceMesh index of each iBUG-68 point (the subset in common use).
MEDIAPIPE_TO_IBUG68 = [
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 397, 361, 323, 454, 356,  # contour 0-16
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose 27-35
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
]  # fmt: skip

# BODY_25 name -> MediaPipe pose landmark index (None: derived or missing).
_POSE_TO_BODY25 = {
    "Nose": 0, "RShoulder": 12, "RElbow": 14, "RWrist": 16, "LShoulder": 11, "LElbow": 13, "LWrist": 15,
    "RHip": 24, "RKnee": 26, "RAnkle": 28, "LHip": 23, "LKnee": 25, "LAnkle": 27, "REye": 5, "LEye": 2,
    "REar": 8, "LEar": 7, "LBigToe": 31, "LHeel": 29, "RBigToe": 32, "RHeel": 30,
}  # fmt: skip
# Measured by tools/calibrate_detector.py on 120 renders (docs/detector_calibration.json): body points by
# visibility (at the centres of VISIBILITY_BINS), hands and face per group (capped at the best body value).
CALIBRATION = {
    "visibility": [0.15, 0.45, 0.7, 0.85, 0.925, 0.975],
    "body_confidence": [0.27, 0.41, 0.56, 0.63, 0.78, 0.85],
    "hands": 0.85,
    "face": 0.85,
}
VISIBILITY_BINS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 1.0)  # MediaPipe visibility bins used by the calibration


class _LazyModule(types.ModuleType):
    """Stands in for a module during MediaPipe's import; the real one is imported on first use (then, if still
    during the import, in the stand-in's place)."""

    def __getattr__(self, attr):
        import importlib

        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


# What MediaPipe's package import pulls in that the detector never uses: matplotlib.pyplot (for a plotting helper:
# 0.7 s of a 1.2 s import), the solutions' drawing helpers (OpenCV and matplotlib) and the Tasks API (audio, text and
# vision tasks; sounddevice). Importing the detector and MediaPipe without them: 0.36 -> 0.21 s (AMD VM, 2026-12-03,
# medians of 8 fresh processes, interleaved)
DEFERRED_MODULES = ("matplotlib", "matplotlib.pyplot", "mediapipe.python.solutions.drawing_utils",
                    "mediapipe.python.solutions.drawing_styles", "mediapipe.tasks", "mediapipe.tasks.python")


@contextmanager
def _heavy_parts_deferred() -> Iterator[None]:
    """While MediaPipe imports, DEFERRED_MODULES are lazy stand-ins (a stand-in's attribute imports the real module);
    afterwards they leave sys.modules, so anyone importing them later gets the real ones (`mediapipe.solutions`
    and `mediapipe.tasks` work as usual, importing what they need on first use). Those imported already (a
    notebook's matplotlib) are left as they are; nothing is done where MediaPipe is imported already."""
    if "mediapipe" in sys.modules:
        yield
        return
    stubs = {n: _LazyModule(n) for n in DEFERRED_MODULES if n not in sys.modules}
    for name, stub in stubs.items():  # `import a.b as c` reads b from a's stand-in
        parent, _, child = name.rpartition(".")
        if parent in stubs:
            setattr(stubs[parent], child, stub)
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]
            parent, _, child = name.rpartition(".")  # a real package keeps its stand-in as its attribute
            owner = sys.modules.get(parent)
            if owner is not None and not isinstance(owner, _LazyModule) and child not in vars(owner):
                setattr(owner, child, stub)


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up only
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with _heavy_parts_deferred():
            import mediapipe
    except ImportError:
        raise ImportError(
            "the keypoint detector needs MediaPipe: pip install mediapipe==0.10.21 "
            "(or reinstall bodycapture, which depends on it)"
        ) from None
    return mediapipe


def _landmarks(lms, width: float, height: float, x0: float = 0.0, y0: float = 0.0) -> np.ndarray:
    """MediaPipe normalised landmarks -> (N, 3) pixel x, y (of an image width x height placed at x0, y0)
    and visibility (1 where not given)."""
    return np.array([[x0 + lm.x * width, y0 + lm.y * height, lm.visibility if lm.HasField("visibility") else 1.0]
                     for lm in lms.landmark])


def calibrate(points: np.ndarray) -> np.ndarray:
    """Raw confidences (body: MediaPipe visibility; hands, face: 1 where detected) -> calibrated ones:
    proportional to 1 / the detector's measured error scale (tools/calibrate_detector.py)."""
    out = points.copy()
    vis = out[..., BODY, 2]
    conf = np.interp(vis, CALIBRATION["visibility"], CALIBRATION["body_confidence"])
    out[..., BODY, 2] = np.where(vis > 0, conf, 0.0)
    for group, idx in (("hands", np.r_[LEFT_HAND, RIGHT_HAND]), ("face", np.r_[FACE, CONTOUR])):
        out[..., idx, 2] = np.where(out[..., idx, 2] > 0, CALIBRATION[group], 0.0)
    return out


def convert(pose, left_hand, right_hand, face, world, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
    """MediaPipe landmark arrays in pixels (pose (33, 3) with visibility; hands (21, 2+); face (468+, 2+);
    world (33, 4); any may be None) -> our (135, 3) keypoints with raw confidences (body: visibility;
    hands, face: 1) and (25, 4) world BODY_25 points."""
    out = np.zeros((NUM_KEYPOINTS, 3))
    if pose is not None:
        for name, k in _POSE_TO_BODY25.items():
            out[BODY_25.index(name)] = pose[k, :3]
        out[BODY_25.index("Neck")] = midpoint(out, BODY_25.index("RShoulder"), BODY_25.index("LShoulder"))
        out[BODY_25.index("MidHip")] = midpoint(out, BODY_25.index("RHip"), BODY_25.index("LHip"))
    for hand, idx in ((left_hand, LEFT_HAND), (right_hand, RIGHT_HAND)):
        if hand is not None:
            out[idx, :2] = hand[:, :2]
            out[idx, 2] = 1.0  # detected; calibrate() turns this into a confidence
    if face is not None:
        pts = face[MEDIAPIPE_TO_IBUG68, :2]
        out[CONTOUR, :2], out[FACE, :2] = pts[:17], pts[17:]
        out[np.r_[CONTOUR, FACE], 2] = 1.0
    outside = (out[:, 0] < 0) | (out[:, 0] > width) | (out[:, 1] < 0) | (out[:, 1] > height)
    out[outside] = 0.0
    world25 = None
    if world is not None:
        world25 = np.zeros((25, 4))
        for name, k in _POSE_TO_BODY25.items():
            world25[BODY_25.index(name)] = world[k]
        for name, (a, b) in {"Neck": ("RShoulder", "LShoulder"), "MidHip": ("RHip", "LHip")}.items():
            pa, pb = world25[BODY_25.index(a)], world25[BODY_25.index(b)]
            world25[BODY_25.index(name)] = [*((pa[:3] + pb[:3]) / 2), min(pa[3], pb[3])]
    return out, world25


class MediaPipeDetector:
    """Every person in an image: MediaPipe's person detector finds them (person_seeds.py), then Holistic's
    pose landmark model reads each person in MediaPipe's region around their detection (or, where that
    fails, in a square crop: other people's faces masked, small people upscaled), the hands' and face's
    models read the people kept, and the landmarks are mapped back into the image and converted into our
    layout. A reading does not depend on what the detector read before (no tracking between readings).

    min_detection_confidence: the person detector's score a person needs (its detections start at
        person_seeds.WHEEL_SCORE, 0.5; with the default, people scoring 0.3-0.5 on the whole image get a second
        look on a crop, person_seeds.py).
    max_people: keep at most this many people, the largest first (None: no cap).
    min_height: drop people whose keypoints span less than this height: pixels when > 1, else a fraction
        of the image height.
    tiles: also search overlapping tiles of the image for small people, and tiles across its left and right
        edges for people cut by them (person_seeds.py).
    thorough: a second, finer level of tiles: more people in crowds and wide shots, about 1 s more a photo.
    workers: threads searching the tiles (None: person_seeds.default_workers(), two where there are two cores).
    masks: with tiles, also look for people the person detector missed in the selfie segmentation's mask of
        the finer tiles around small people (person_masks.py).
    Reuse one detector for many images: creating it costs about 0.1-0.4 s.
    """

    def __init__(self, min_detection_confidence: float = 0.5, refine_face: bool = False,
                 raw_visibility: bool = False, max_people: int | None = 20, min_height: float = 0.1,
                 tiles: bool = True, thorough: bool = False, workers: int | None = None, masks: bool = True):
        if max_people is not None and max_people < 1:
            raise ValueError(f"max_people must be at least 1, got {max_people}")
        if not (min_height >= 0):
            raise ValueError(f"min_height must be >= 0, got {min_height}")
        self.min_detection_confidence = min_detection_confidence
        self.refine_face = refine_face
        self.raw_visibility = raw_visibility  # confidences = MediaPipe's visibility (for calibrating)
        self.max_people = max_people
        self.min_height = min_height
        self.tiles = tiles
        self.thorough = thorough
        self.workers = workers
        self.masks = masks
        self._masks = None
        self._seeds = None
        self._by_region: list = []  # one graph per worker thread (a graph runs one image at a time)

    def _get_seeds(self):
        if self._seeds is None:
            from .person_seeds import PersonSeedDetector

            _import_mediapipe()
            self._seeds = PersonSeedDetector(tile_fraction=0.5 if self.tiles else None, thorough=self.thorough,
                                             min_score=self.min_detection_confidence, workers=self.workers)
        return self._seeds

    def _get_by_region(self, worker: int = 0):
        """One worker thread's graphs (a graph runs one image at a time): (the pose landmark model on a
        seed's region, the hands' and face's models from a pose)."""
        while len(self._by_region) <= worker:
            from .person_seeds import graph_from_text

            with native_stderr_silenced():
                self._by_region.append((
                    graph_from_text(_POSE_BY_REGION, {"model_complexity": 1, "enable_segmentation": False}),
                    graph_from_text(_HANDS_AND_FACE, {"refine_face_landmarks": self.refine_face})))
        return self._by_region[worker]

    def _pose_by_region(self, image: np.ndarray, seed, worker: int | None = None) -> "PoseReading | None":
        """Holistic's pose landmark model on MediaPipe's own region around a seed (no second person search):
        the pose, its hands and face still to read (_completed), or None when the model says there is no
        person there. worker: run on that worker thread's graphs, the caller having silenced native output
        (None: the first worker's, silenced here)."""
        height, width = image.shape[:2]
        inputs = {"image": image, "detection": seed_detection(seed, width, height)}
        with native_stderr_silenced() if worker is None else nullcontext():
            result = self._get_by_region(worker or 0)[0].process(inputs)
        if result.pose_landmarks is None:
            return None
        return PoseReading(image, _landmarks(result.pose_landmarks, width, height), _world(result),
                           result.pose_landmarks, (0.0, 0.0, width, height))

    def _completed(self, reading: "PoseReading", worker: int | None = None):
        """A pose reading with its hands and face read (Holistic's models, from the pose, on the image it was
        read on) -> landmark arrays (pose, left hand, right hand, face, world) in photo pixels. worker: as
        for _pose_by_region."""
        inputs = {"image": reading.image, "pose_landmarks": reading.landmarks}
        with native_stderr_silenced() if worker is None else nullcontext():
            result = self._get_by_region(worker or 0)[1].process(inputs)
        x0, y0, width, height = reading.frame

        def pts(lms):
            return None if lms is None else _landmarks(lms, width, height, x0, y0)

        return (reading.pose, pts(result.left_hand_landmarks), pts(result.right_hand_landmarks),
                pts(result.face_landmarks), reading.world)

    def _people_of_seeds(self, image: np.ndarray, seeds: list, windows: list) -> tuple[list, np.ndarray | None]:
        """Each seed's person, read on the person search's worker threads (the readings do not depend on one
        another, so they are made at once, before the seeds are gone through in order): Holistic's pose model
        on the seed's own region (_pose_by_region) where the seed has the detector's four points and needs no
        confirmation, else, or where that reading finds nobody or someone else, the fallbacks
        (_person_by_fallbacks); a person found has their hands and face read at once (_completed); in the same
        batch the selfie segmentation of `windows` (_mask_windows) -> ([(PoseReading, landmark arrays) or None
        for each seed], the mask's (H, W) probabilities or None without windows)."""
        def person(i: int, worker: int):
            seed = seeds[i]
            read = None
            if seed.keypoints is not None and not seed.needs_confirmation:
                read = self._pose_by_region(image, seed, worker)
            if read is None or not _agrees_with_seed(read.pose, seed):  # (a seed needing confirmation: not read)
                read = self._person_by_fallbacks(image, seeds, i, worker)
            return None if read is None else (read, self._completed(read, worker))

        def job(item: tuple[str, int], worker: int):
            kind, i = item
            return self._get_masks().segment(image, windows[i], worker) if kind == "mask" else person(i, worker)

        from .person_masks import probabilities

        jobs = [("seed", i) for i in range(len(seeds))] + [("mask", i) for i in range(len(windows))]
        if windows:
            with native_stderr_silenced():  # the models print as they load
                self._get_masks().prepare(min(self._get_seeds().workers, len(jobs)))
        done = self._on_workers(job, jobs)
        prob = probabilities(image.shape[:2], windows, done[len(seeds) :]) if windows else None
        return done[: len(seeds)], prob

    def _on_workers(self, read, items: list) -> list:
        """read(item, worker) for each item, on the person search's worker threads, each with its own
        by-region graphs (the readings do not depend on one another) -> the readings, in order."""
        pool = self._get_seeds()
        # native output silenced once, around making the graphs and running them (it swaps file descriptor 2):
        # a graph opens its models in the background, which print; made and run inside, none prints after
        with native_stderr_silenced():
            for worker in range(min(pool.workers, len(items))):  # made here, not raced for in the threads
                self._get_by_region(worker)
            return pool.parallel([lambda k, item=item: read(item, k) for item in items])

    def _person_by_variants(self, image: np.ndarray, seed, worker: int | None = None):
        """Holistic's pose model on each of REGION_VARIANTS of MediaPipe's region around a seed: the first
        reading (its hands and face still to read, _completed), when every variant finds the seed's person
        and they agree on where the body is (their pose points within CONFIRM_TOLERANCE of the body's size,
        median), else None. worker: as for _pose_by_region."""
        if seed.keypoints is None or not REGION_VARIANTS:
            return None
        readings = []
        for scale, rise, upright in REGION_VARIANTS:
            read = self._pose_by_region(image, region_variant(seed, scale, rise, upright), worker)
            if read is None or not _agrees_with_seed(read.pose, seed):
                return None
            readings.append(read)
        first = readings[0].pose[:, :2]
        size = max(np.ptp(first[:, 1]), np.ptp(first[:, 0]), 1.0)
        for read in readings[1:]:
            if np.median(np.linalg.norm(read.pose[:, :2] - first, axis=1)) > CONFIRM_TOLERANCE * size:
                return None
        return readings[0]

    def _completed_person_by_variants(self, image: np.ndarray, seed, worker: int | None = None):
        """_person_by_variants with hands and face read (_completed): landmark arrays, or None."""
        read = self._person_by_variants(image, seed, worker)
        return None if read is None else self._completed(read, worker)

    def _people_by_variants(self, image: np.ndarray, seeds: list) -> list:
        """_person_by_variants of each seed, on the person search's worker threads (_on_workers) ->
        [(seed, landmark arrays)] of the seeds confirmed, in order."""
        reads = self._on_workers(lambda s, k: self._completed_person_by_variants(image, s, k), seeds)
        return [(seed, lms) for seed, lms in zip(seeds, reads) if lms is not None]

    def _people_behind(self, image: np.ndarray, people: list) -> list:
        """People hidden behind the small people found (BEHIND_SIDE): with every found person's keypoint
        box greyed out, the person detector around each small one, each new seed kept where two regions
        confirm a person on the greyed photo -> readings (MediaPipeDetector._reading) of the new people."""
        boxes, hips, noses = _boxes_hips_noses(people)
        grey = greyed(image, boxes)
        height, width = image.shape[:2]
        with native_stderr_silenced():  # once, around the search's threads
            seeds = self._get_seeds().beside(grey, boxes, hips, noses, side=BEHIND_SIDE, mirrored=False)
        return [self._reading(lms, seed.score, False, width, height)
                for seed, lms in self._people_by_variants(grey, seeds)]

    def _mask_windows(self, seeds: list, height: int, width: int) -> list[tuple[int, int, int]]:
        """The windows (x0, y0, side) that the selfie segmentation reads (person_masks.py): the finer tiles
        around the small seeds (none without masks or tiles)."""
        from .person_seeds import tiles_near_small

        return tiles_near_small(height, width, seeds) if self.masks and self.tiles else []

    def _people_by_masks(self, image: np.ndarray, prob: np.ndarray, covered: list[np.ndarray], min_px: float) -> list:
        """People the person detector missed near small people: blobs of the selfie segmentation's mask `prob`
        (H, W) (over _mask_windows) outside the found people's keypoint boxes `covered` ((4,) each), each
        kept where two regions confirm a person (person_masks.py) -> [(landmark arrays, mean mask
        probability)]."""
        from .person_masks import blob_seeds, uncovered_blobs

        blobs = uncovered_blobs(prob, np.array(covered).reshape(-1, 4), min_px)

        def blob_person(blob, worker: int):  # its first seed that two regions confirm
            box, score = blob
            for seed in blob_seeds(box, score):
                lms = self._completed_person_by_variants(image, seed, worker)
                if lms is not None:
                    return lms, score
            return None

        return [person for person in self._on_workers(blob_person, blobs) if person is not None]

    def _get_masks(self):
        if self._masks is None:
            from .person_masks import PersonMasks

            self._masks = PersonMasks()
        return self._masks

    def _pose_of_image(self, image: np.ndarray, x0: float, y0: float, width: float, height: float,
                       worker: int | None = None) -> "PoseReading | None":
        """MediaPipe Pose on `image` (a crop whose pixel (0, 0) is (x0, y0) of the photo and that spans width x
        height photo pixels): the person detector's most confident detection and the pose landmark model on
        MediaPipe's region around it, as Pose does (the same landmarks, tested), with this worker's graphs
        instead of a Pose of its own (whose models would load again: 0.1 s a worker) -> the pose in photo
        pixels, its hands and face still to read (_completed), or None when no person is found. worker: as for
        _pose_by_region."""
        with native_stderr_silenced() if worker is None else nullcontext():
            detection = self._get_seeds().first_detection(image, worker or 0, self.min_detection_confidence)
            if detection is None:
                return None
            result = self._get_by_region(worker or 0)[0].process({"image": image, "detection": detection})
        if result.pose_landmarks is None:
            return None
        return PoseReading(image, _landmarks(result.pose_landmarks, width, height, x0, y0), _world(result),
                           result.pose_landmarks, (x0, y0, width, height))

    def _person_by_fallbacks(self, image: np.ndarray, seeds: list, i: int, worker: int | None = None):
        """The person of seed i when its own region failed: MediaPipe Pose on a crop around it (the region
        was off, e.g. a bowed head shrinks it), wider if the first crop found nobody or someone else, with
        the other seeds' faces greyed out; else two regions that confirm them (_person_by_variants). A seen
        across the photo's edge only: the two regions alone. -> a PoseReading or None.
        worker: as for _pose_by_region."""
        seed = seeds[i]
        if not seed.needs_confirmation:
            others = [s.face for j, s in enumerate(seeds) if j != i]
            for scale in CROP_SCALES:
                crop, x0, y0, side = person_crop(image, seed, others, scale)
                read = self._pose_of_image(crop, x0, y0, side, side, worker)
                if read is not None and _agrees_with_seed(read.pose, seed):
                    return read
        return self._person_by_variants(image, seed, worker)

    def __call__(self, image: np.ndarray | str | Path) -> ImageKeypoints:
        source = str(image) if isinstance(image, (str, Path)) else "array"
        if isinstance(image, (str, Path)):
            image = read_image(image)
        image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        height, width = image.shape[:2]
        if max(height, width) <= MAX_DETECT_SIDE:
            return self._detect(image, source, self._min_px(height))
        # a very large photo: detected scaled down (MediaPipe's models read 224-256 px crops of it anyway), its
        # people's points and boxes scaled back; min_height in pixels means the photo's pixels
        small = scaled_to_fit(image, MAX_DETECT_SIDE)
        small_h, small_w = small.shape[:2]
        found = self._detect(small, source, self._min_px(small_h, small_h / height))
        return _scaled_back(found, (height, width), (width / small_w, height / small_h))

    def _detect(self, image: np.ndarray, source: str, min_px: float) -> ImageKeypoints:
        """Every person of (H, W, 3) uint8 `image` (see the class) at least `min_px` of its pixels tall."""
        height, width = image.shape[:2]
        with native_stderr_silenced():
            seeds = self._get_seeds()(image)
        found = []  # (landmark arrays, seed score, detected)
        hips = []  # hip centre of each person found so far
        # each seed's person, with the fallbacks of the seeds whose own region failed and of those seen across the
        # photo's edge only, their hands and face, and the selfie segmentation of the windows around the small
        # seeds (which depends on the seeds only), all at once on the worker threads; a seed skipped below as
        # someone found before it wastes its reading (3 of the 54 people read on the 14 COCO photos)
        people_of_seeds, prob = self._people_of_seeds(image, seeds, self._mask_windows(seeds, height, width))
        for seed, person in zip(seeds, people_of_seeds):
            if any(np.linalg.norm(seed.hip - h) < SKIP_TOLERANCE * seed.radius for h in hips):
                continue  # the seed of someone already found (seen from another tile)
            if person is None:
                log.debug("%s: nobody confirmed at the person detector's (%.0f, %.0f)", source, *seed.hip)
                continue
            read, lms = person
            found.append((lms, seed.score, not seed.needs_confirmation))
            hips.append(read.pose[[23, 24], :2].mean(0))
        if not seeds:  # the person detector found nobody: MediaPipe's own search on the whole image, as before
            read = self._pose_of_image(image, 0.0, 0.0, width, height)
            if read is not None:
                found.append((self._completed(read), 0.5, True))
        # detected: from a person-detector seed inside the photo (preferred when one person is read twice)
        people = [self._reading(lms, score, detected, width, height) for lms, score, detected in found]
        if people and self.tiles:  # people half hidden beside the small ones found (person_seeds.BESIDE_SIDE)
            with native_stderr_silenced():  # once, around the search's threads
                beside = self._get_seeds().beside(image, *_boxes_hips_noses(people))
            people += [self._reading(lms, seed.score, False, width, height)
                       for seed, lms in self._people_by_variants(image, beside)]
            people += self._people_behind(image, people)  # and behind them (BEHIND_SIDE)
        if prob is not None:
            covered = [box for points, *_ in people if (box := keypoint_box(points)) is not None]
            people += [self._reading(lms, score, False, width, height)
                       for lms, score in self._people_by_masks(image, prob, covered, min_px)]
        return self._select(people, (height, width), source, min_px)

    def _reading(self, lms, score: float, detected: bool, width: int, height: int):
        """Landmark arrays -> (points (135, 3) with confidences, world (25, 4), visibility (25,), score,
        detected)."""
        points, world25 = convert(*lms, width, height)
        visibility = points[:25, 2].copy()
        if not self.raw_visibility:
            points = calibrate(points)
        return points, world25, visibility, score, detected

    def _min_px(self, height: int, pixel_scale: float = 1.0) -> float:
        """The smallest person kept, in pixels of the image detected, `height` tall, which has `pixel_scale` of its
        pixels per pixel of the photo (a very large photo is detected scaled down): min_height means the photo's
        pixels when > 1, else a fraction of the height."""
        return self.min_height * pixel_scale if self.min_height > 1 else self.min_height * height

    def _select(self, people, size, source, min_px: float) -> ImageKeypoints:
        """Merge duplicates, drop those under `min_px` tall, order by size (tallest first), cap the count."""
        kept = []
        for points, world, vis, score, detected in people:
            box = keypoint_box(points)
            if box is None or box[3] - box[1] < min_px:
                continue
            kept.append((box, points, world, vis, score, detected))
        kept.sort(key=lambda p: -(p[0][3] - p[0][1]))
        unique = []
        for person in kept:
            twin = next((k for k, other in enumerate(unique) if _same_person(person[1], other[1])), None)
            if twin is not None:  # one person read twice (from two seeds): keep the reading of a person-detector
                # seed inside the photo over one across its edge or from the mask, then the surer seed's
                if (person[5], person[4]) > (unique[twin][5], unique[twin][4]):
                    unique[twin] = person
                continue
            # no face and lying inside a taller person: a body that the pose model saw in a part of
            # someone (measured: in a raised arm, between a woman's legs), not a person of its own; half
            # inside is enough when the person detector was unsure of its seed, unless two regions confirmed
            # the body (the readings not `detected`: coco_544's seated man, two thirds inside his neighbour)
            # Also one whose box coincides with a taller person's: that person read a second time (measured:
            # the mirrored coco_488's catcher, read from two seeds as two poses, boxes at IoU 0.61; no other
            # two people of the 14 photos or their mirrors overlap by more than 0.3)
            faceless = not (person[1][FACE, 2] > 0).any()
            inside = max((_inside(person[0], other[0]) for other in unique), default=0.0)
            same_box = max((_iou(person[0], other[0]) for other in unique), default=0.0) > SAME_BOX
            unsure = person[4] < WEAK_SEED and person[5]
            if faceless and (inside > CONTAINED or (inside > 0.5 and unsure) or same_box):
                continue
            unique.append(person)
        unique.sort(key=lambda p: -(p[0][3] - p[0][1]))
        if self.max_people is not None:
            unique = unique[: self.max_people]
        if not unique:
            log.info("%s: no person found", source)
            return ImageKeypoints.empty(size, source)
        boxes, points, worlds, vis, scores, _ = zip(*unique)
        world = None if any(w is None for w in worlds) else np.stack(worlds)
        return ImageKeypoints(np.stack(points), size, world, source, boxes=np.stack(boxes),
                              scores=np.array(scores), visibility=np.stack(vis))

    def close(self) -> None:
        if self._seeds is not None:
            self._seeds.close()
            self._seeds = None
        for graphs in self._by_region:
            for graph in graphs:
                graph.close()
        self._by_region = []
        if self._masks is not None:
            self._masks.close()
            self._masks = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _scaled_back(found: ImageKeypoints, size: tuple[int, int], factor: tuple[float, float]) -> ImageKeypoints:
    """Keypoints detected in a scaled copy of a photo -> in the photo's pixels: points (x, y) and boxes times
    `factor` (x, y); size: the photo's (height, width). Confidences, visibility and world points are unchanged."""
    fx, fy = factor
    points = found.points.copy()
    points[..., 0] *= fx
    points[..., 1] *= fy
    boxes = None if found.boxes is None else found.boxes * np.array([fx, fy, fx, fy])
    return ImageKeypoints(points, size, found.world, found.source, boxes=boxes, scores=found.scores,
                          visibility=found.visibility)


def _world(result) -> np.ndarray | None:
    """A Holistic-like result's pose world landmarks -> (33, 4) metric x, y, z and visibility, or None."""
    if result.pose_world_landmarks is None:
        return None
    return np.array([[lm.x, lm.y, lm.z, lm.visibility] for lm in result.pose_world_landmarks.landmark])


# Holistic's own graph (holistic_landmark_cpu) in two parts, its person search replaced by a region from our
# person detections: MediaPipe's PoseDetectionToRoi (the region its tracking would use) and the pose landmark
# model on it; then (below) hands and face from the pose, as Holistic does.
# A seed's detection (input streams "image" and "detection", see `seed_detection`) -> MediaPipe's region
# around the person, "pose_rect" (the start of every graph that runs a model on a seed's person).
SEED_REGION_NODES = """
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE_CPU:image" output_stream: "SIZE:image_size" }
node { calculator: "PoseDetectionToRoi" input_stream: "DETECTION:detection" input_stream: "IMAGE_SIZE:image_size"
       output_stream: "ROI:pose_rect" }
"""
_POSE_BY_REGION = """
input_stream: "image"
input_stream: "detection"
output_stream: "pose_landmarks"
output_stream: "pose_world_landmarks"
""" + SEED_REGION_NODES + """
node { calculator: "PoseLandmarkByRoiCpu" input_stream: "IMAGE:image" input_stream: "ROI:pose_rect"
       output_stream: "LANDMARKS:pose_landmarks" output_stream: "AUXILIARY_LANDMARKS:auxiliary_landmarks"
       output_stream: "WORLD_LANDMARKS:pose_world_landmarks"
       input_side_packet: "MODEL_COMPLEXITY:model_complexity" input_side_packet: "ENABLE_SEGMENTATION:enable_segmentation" }
"""
# ...and the rest of holistic_landmark_cpu, the hands and face from the pose, as a graph of its own: most regions
# read are not kept (another tile's view of someone found, a region variant that finds nobody), and their hands
# and face would cost a third of each reading (31.5 against 21.2 ms on the AMD VM, 2026-12-02). Holistic's own
# subgraphs for them (HandLandmarksLeftAndRightCpu, FaceLandmarksFromPoseCpu) track: each hand and the face
# are read in the previous reading's region when it overlaps the new one, so a person's hands and face
# depended on who was read before on that graph (the same photo read twice: 0.4 px apart in the hands, 3.8 px
# in the face). Here they are the same nodes without the tracking (HandTracking, FaceTracking): a reading is
# that of a graph just started (checked: 300 hands and faces identical), whatever was read before.
def _hand_from_pose_nodes(side: str, wrist: int, pinky: int, index: int) -> str:
    """Nodes of HandLandmarksFromPoseCpu for one hand (pose landmarks wrist, pinky, index), untracked."""
    return f"""
node {{ calculator: "SplitNormalizedLandmarkListCalculator" input_stream: "pose_landmarks" output_stream: "{side}_from_pose"
  options {{ [mediapipe.SplitVectorCalculatorOptions.ext] {{ ranges {{ begin: {wrist} end: {wrist + 1} }}
    ranges {{ begin: {pinky} end: {pinky + 1} }} ranges {{ begin: {index} end: {index + 1} }} combine_outputs: true }} }} }}
node {{ calculator: "HandVisibilityFromHandLandmarksFromPose" input_stream: "HAND_LANDMARKS_FROM_POSE:{side}_from_pose"
  output_stream: "VISIBILITY:{side}_visible" }}
node {{ calculator: "GateCalculator" input_stream: "{side}_from_pose" input_stream: "ALLOW:{side}_visible"
  output_stream: "{side}_visible_from_pose" }}
node {{ calculator: "HandLandmarksFromPoseToRecropRoi" input_stream: "HAND_LANDMARKS_FROM_POSE:{side}_visible_from_pose"
  input_stream: "IMAGE_SIZE:image_size" output_stream: "ROI:{side}_roi_from_pose" }}
node {{ calculator: "HandRecropByRoiCpu" input_stream: "IMAGE:image" input_stream: "ROI:{side}_roi_from_pose"
  output_stream: "HAND_ROI_FROM_RECROP:{side}_roi" }}
node {{ calculator: "HandLandmarkCpu" input_stream: "IMAGE:image" input_stream: "ROI:{side}_roi"
  output_stream: "LANDMARKS:{side}_hand_landmarks" }}
"""


_HANDS_AND_FACE = """
input_stream: "image"
input_stream: "pose_landmarks"
output_stream: "left_hand_landmarks"
output_stream: "right_hand_landmarks"
output_stream: "face_landmarks"
node { calculator: "ImagePropertiesCalculator" input_stream: "IMAGE:image" output_stream: "SIZE:image_size" }
""" + _hand_from_pose_nodes("left", 15, 17, 19) + _hand_from_pose_nodes("right", 16, 18, 20) + """
node { calculator: "SplitNormalizedLandmarkListCalculator" input_stream: "pose_landmarks" output_stream: "face_from_pose"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] { ranges { begin: 0 end: 11 } } } }
node { calculator: "FaceLandmarksFromPoseToRecropRoi" input_stream: "FACE_LANDMARKS_FROM_POSE:face_from_pose"
  input_stream: "IMAGE_SIZE:image_size" output_stream: "ROI:face_roi_from_pose" }
node { calculator: "FaceDetectionShortRangeByRoiCpu" input_stream: "IMAGE:image" input_stream: "ROI:face_roi_from_pose"
  output_stream: "DETECTIONS:face_detections" }
node { calculator: "FaceDetectionFrontDetectionsToRoi" input_stream: "DETECTIONS:face_detections"
  input_stream: "IMAGE_SIZE:image_size" output_stream: "ROI:face_roi" }
node { calculator: "FaceLandmarkCpu" input_stream: "IMAGE:image" input_stream: "ROI:face_roi"
  input_side_packet: "WITH_ATTENTION:refine_face_landmarks" output_stream: "LANDMARKS:face_landmarks" }
"""


@dataclass
class PoseReading:
    """The pose landmark model's reading of a person, their hands and face not yet read: the image it was read
    on (H, W, 3; the photo or a crop of it), pose (33, 3) x, y in photo pixels and visibility, world (33, 4)
    or None, the pose landmarks as MediaPipe gave them (normalised to `image`; the hands' and face's models
    start from them) and frame: the photo-pixel rectangle that `image` spans (x0, y0, width, height)."""

    image: np.ndarray
    pose: np.ndarray
    world: np.ndarray | None
    landmarks: object
    frame: tuple[float, float, float, float]


# Holistic's hip centre must lie within this many seed radii of the seed's, else it followed someone else.
SEED_TOLERANCE = 0.6
# A seed whose hip centre is this close (in seed radii) to a person already found is taken for that person
# (a detection of them from another tile) and not cropped again. 0.6 lost the catcher behind an umpire.
SKIP_TOLERANCE = 0.3
CONTAINED = 0.8  # a faceless person with this share of their box inside a taller person's is dropped,
WEAK_SEED = 0.6  # and with half of it inside when the person detector was unsure (score below this),
SAME_BOX = 0.5  # and when their boxes coincide this much (IoU): one person read twice, once without a face
MIN_BODY_SCALE = 0.2
CROP_SCALES = (3.0, 6.0)  # crop side / seed radius (MediaPipe's own region is 2.5), then a retry
CROP_MIN_PX = 384  # smaller crops are upscaled to this (hand and face landmarks get more pixels)
CROP_MAX_PX = 1024


# The pose landmark model's presence score is brittle on small people in crowds: coco_257's woman and man at
# the food truck score 0.12 and 0.07 on MediaPipe's region around their seeds (0.5 needed), and over 0.9 on
# some regions a little smaller or shifted (benchmarks/seed_presence.py). Clutter can score high on one such
# region too (a hand and the utensils it holds in coco_294), so after the region and both crops have
# failed, a seed's person is kept only when two regions confirm it: upright, 15 % smaller, centred a fifth of
# a body radius above and below the hip centre: (scale of the region, rise of its centre in body radii,
# upright instead of turned as the detector's points say). Chosen on the 14 COCO photos (docs/evaluation.md,
# real photos): of 24 such regions, these two found both food-truck people and none of the clutter.
# A photo larger than this (pixels, longer side) is detected in a copy scaled down to it: the same people, and a
# 45-megapixel photo in 0.7 + 0.3 s (the scaling) instead of 1.5-3.3 s. Photos up to it are detected as they are.
MAX_DETECT_SIDE = 4096
REGION_VARIANTS = ((0.85, 0.2, True), (0.85, -0.2, True))
CONFIRM_TOLERANCE = 0.1  # the two readings' pose points agree within this share of the body's size (median)

# A person standing right behind a small person found (coco_257's woman in grey, her left half behind the man
# in black at the food truck) gets no seed in any tile or crop of the photo (benchmarks/missed_people.py: none
# of 126 crops around her), as the person in front takes the detection. With every found person's keypoint box
# greyed out (`greyed`), the detector fires on her in most crops. So a look behind: the found greyed out, the
# detector (at DOUBTFUL_SCORE) on a square of BEHIND_SIDE x each small person's height centred on them, new
# seeds only (as person_seeds.beside keeps them), each kept where two regions confirm a person on the greyed
# photo. Measured on the 14 COCO photos and their mirrors (held out), sides 2 and 2.5, mirrored or not: 2,
# not mirrored, found her, coco_544's man standing behind the dugout (not counted: legs hidden) and, in the
# mirrored coco_357, the catcher and umpire (missed there before); nothing false; about 8 % of the detection time.
BEHIND_SIDE = 2.0


def region_variant(seed, scale: float = 1.0, rise: float = 0.0, upright: bool = False):
    """A seed whose MediaPipe region is `scale` times the size, its centre `rise` body radii higher, and
    (upright) not turned: the detector's size point straight above the hip centre."""
    from .person_seeds import PersonSeed

    hip = seed.hip - np.array([0.0, rise * seed.radius])
    points = hip + (seed.keypoints - seed.hip) * scale
    if upright:
        points[1] = hip - np.array([0.0, scale * seed.radius])
    return PersonSeed(seed.score, seed.face, hip, scale * seed.radius, points)


def seed_detection(seed, width: int, height: int):
    """A seed (person_seeds.PersonSeed, in pixels of a width x height image) as the Detection proto that
    MediaPipe's PoseDetectionToRoi takes: its face box and its four keypoints, relative to the image."""
    from mediapipe.framework.formats import detection_pb2

    det = detection_pb2.Detection()
    det.score.append(seed.score)
    det.label_id.append(0)
    loc = det.location_data
    loc.format = loc.RELATIVE_BOUNDING_BOX
    box = loc.relative_bounding_box
    box.xmin, box.ymin = seed.face[0] / width, seed.face[1] / height
    box.width, box.height = (seed.face[2] - seed.face[0]) / width, (seed.face[3] - seed.face[1]) / height
    for x, y in seed.keypoints:
        point = loc.relative_keypoints.add()
        point.x, point.y = x / width, y / height
    return det


def _agrees_with_seed(pose: np.ndarray, seed) -> bool:
    """Holistic's body (33 MediaPipe pose landmarks in photo pixels) is the seed's person: its hip centre
    lies within SEED_TOLERANCE seed radii of the seed's, and it is not a tiny skeleton fitted into a part
    of the crop (its torso or shoulder width is at least MIN_BODY_SCALE of the seed's radius; measured on
    the test photos: 0.5-0.9 for real people, 0.14 for a skeleton drawn inside a raised arm)."""
    radius = max(seed.radius, 1.0)
    hips, shoulders = pose[[23, 24], :2].mean(0), pose[[11, 12], :2].mean(0)
    if np.linalg.norm(hips - seed.hip) > SEED_TOLERANCE * radius:
        return False
    scale = max(np.linalg.norm(shoulders - hips), np.linalg.norm(pose[11, :2] - pose[12, :2]))
    return scale >= MIN_BODY_SCALE * radius


def person_crop(image: np.ndarray, seed, others: list[np.ndarray],
                scale: float = CROP_SCALES[0]) -> tuple[np.ndarray, float, float, float]:
    """The square crop around a seed person: (crop (S, S, 3) uint8, x0, y0, side in photo pixels). Other
    people's face boxes inside it are filled with grey (Holistic's own detector looks for faces), unless
    they overlap this person's face; parts outside the photo are black."""
    from .person_seeds import box_iou, square_crop

    side = max(scale * seed.radius, 32.0)
    work = image
    if others:
        faces = np.stack(others)
        keep = box_iou(faces, seed.face[None])[:, 0] < 0.05
        if keep.any():
            work = image.copy()
            h, w = image.shape[:2]
            for fx0, fy0, fx1, fy1 in faces[keep]:
                pad_x, pad_y = 0.1 * (fx1 - fx0), 0.1 * (fy1 - fy0)
                xa, xb = int(max(fx0 - pad_x, 0)), int(min(fx1 + pad_x, w))
                ya, yb = int(max(fy0 - pad_y, 0)), int(min(fy1 + pad_y, h))
                work[ya:yb, xa:xb] = 128
    crop, x0, y0 = square_crop(work, seed.hip, side, int(np.clip(round(side), CROP_MIN_PX, CROP_MAX_PX)))
    return crop, x0, y0, float(side)


def greyed(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """A copy of `image` (H, W, 3) with each box (N, 4) x0, y0, x1, y1 (NaN rows skipped) filled with grey."""
    out = image.copy()
    h, w = image.shape[:2]
    for x0, y0, x1, y1 in boxes[np.isfinite(boxes).all(1)]:
        out[max(int(y0), 0) : min(int(np.ceil(y1)), h), max(int(x0), 0) : min(int(np.ceil(x1)), w)] = 128
    return out


def keypoint_box(points: np.ndarray) -> np.ndarray | None:
    """(135, 3) keypoints -> (4,) box x0, y0, x1, y1 of the detected points, or None if there are none."""
    seen = points[:, 2] > 0
    if not seen.any():
        return None
    xy = points[seen, :2]
    return np.concatenate([xy.min(0), xy.max(0)])


def _boxes_hips_noses(people: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readings (MediaPipeDetector._reading) -> their keypoint boxes (N, 4), hip centres and noses (N, 2),
    NaN where not seen."""
    points = np.stack([p[0] for p in people])
    seen = points[:, :, 2:] > 0
    boxes = np.stack([b if (b := keypoint_box(p)) is not None else np.full(4, np.nan) for p in points])
    at = lambda k: np.where(seen[:, k], points[:, k, :2], np.nan)  # noqa: E731
    return boxes, at(BODY_25.index("MidHip")), at(BODY_25.index("Nose"))


def _same_person(a: np.ndarray, b: np.ndarray) -> bool:
    """Two detections of one person: their faces' centres lie within 0.3 face widths, or their body points
    seen in both lie within 10 % of the body's size, as they are or with b's left and right swapped
    (MediaPipe may swap them between two runs)."""
    box = keypoint_box(a)
    size = max(box[3] - box[1], box[2] - box[0], 1.0)
    fa, fb = a[FACE][a[FACE, 2] > 0, :2], b[FACE][b[FACE, 2] > 0, :2]
    if len(fa) >= 10 and len(fb) >= 10:  # one face: one person, whatever the pose model made of the body
        width = max(np.ptp(fa[:, 0]), np.ptp(fb[:, 0]), 1.0)
        if np.linalg.norm(fa.mean(0) - fb.mean(0)) < 0.3 * width:
            return True
    for other in (b, b[FLIP]):
        both = (a[:25, 2] > 0) & (other[:25, 2] > 0)
        if both.sum() >= 3 and np.median(np.linalg.norm(a[:25, :2][both] - other[:25, :2][both], axis=1)) < 0.1 * size:
            return True
    return False


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of boxes a and b (4,) x0, y0, x1, y1."""
    from .person_seeds import box_iou

    return float(box_iou(a[None], b[None])[0, 0])


def _inside(small: np.ndarray, large: np.ndarray) -> float:
    """The share of box `small`'s area that lies inside box `large` (boxes x0, y0, x1, y1)."""
    lo, hi = np.maximum(small[:2], large[:2]), np.minimum(small[2:], large[2:])
    inter = np.clip(hi - lo, 0, None).prod()
    return float(inter / max(np.clip(small[2:] - small[:2], 0, None).prod(), 1e-9))


def detect(image: np.ndarray | str | Path, detector: MediaPipeDetector | None = None) -> ImageKeypoints:
    """Detect the keypoints of every person in an image (array or file); nobody gives 0 people."""
    if detector is not None:
        return detector(image)
    with MediaPipeDetector() as det:
        return det(image)
