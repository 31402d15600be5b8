"""The capture pipeline: photos or folders in -> every person's keypoints -> batched fits -> one result
folder per photo, written atomically. The CLI (`bodycapture fit`, `bodycapture detect`), the evaluation
and the benchmarks all run through here.

    from bodycapture import capture
    report = capture("photos/", out="out")        # or one photo, or a list of them
    print(report.summary())                        # images, people found and fitted, where the results are

How one run goes:
1. The inputs are listed (`find_images`), each gets a result name (`result_names`: the file's stem, made
   unique when two inputs share one, e.g. person.jpg and person.png), and existing results are skipped
   unless `overwrite` (a note, not a failure).
2. A background thread reads the photos and detects every person (keypoints/mediapipe.py), or reads the
   given keypoint files, while the main thread imports torch and loads the model, and later while it
   fits the previous batch: detection runs in C++ with the GIL released, so the two overlap.
3. `batch_images` photos at a time are fitted as one batch (every person of every photo is an item).
4. Each photo's results are staged in a hidden folder unique to this process and renamed into place
   (io/results.py): a result appears whole or not at all.
One bad photo (unreadable, nobody in it, keypoints for another image) is one line in the report; the
others still run.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BodyCaptureError

__all__ = ["CaptureOptions", "ImageReport", "CaptureReport", "Prepared", "capture", "detect_images",
           "find_images", "result_names", "prepare_image", "fit_prepared", "choose_threads", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MESH_FORMATS = ("obj", "ply", "glb")


@dataclass
class CaptureOptions:
    """How a capture runs. The fitting itself is configured by `FitConfig` (fitting/schedule.py).

    keypoints: an OpenPose JSON file (one photo), or a folder of NAME_keypoints.json, used instead of
        detection. formats: mesh formats to write. batch_images: photos fitted together in one batch.
    max_people: at most this many people per photo, the largest first. min_height: people shorter than
        this in the photo are ignored (pixels when > 1, else a fraction of the image height).
    threads: torch threads (None: `choose_threads`). progress: bars on stderr (shown after 1 s).
    """

    out: Path = Path("out")
    keypoints: Path | None = None
    formats: tuple[str, ...] = ("obj",)
    batch_images: int = 8
    overwrite: bool = False
    max_people: int | None = 20
    min_height: float = 0.1
    device: str | None = None
    threads: int | None = None
    progress: bool = True

    def validate(self) -> None:
        if self.batch_images < 1:
            raise BodyCaptureError(f"batch_images must be at least 1, got {self.batch_images}")
        if self.max_people is not None and self.max_people < 1:
            raise BodyCaptureError(f"max_people must be at least 1, got {self.max_people}")
        if not (self.min_height >= 0) or not np.isfinite(self.min_height):
            raise BodyCaptureError(f"min_height must be a number >= 0 (pixels, or a fraction of the image "
                                   f"height when <= 1), got {self.min_height}")
        if self.threads is not None and self.threads < 1:
            raise BodyCaptureError(f"threads must be at least 1, got {self.threads}")
        bad = [f for f in self.formats if f not in MESH_FORMATS]
        if bad:
            raise BodyCaptureError(f"unknown mesh format(s) {', '.join(bad)} (use {', '.join(MESH_FORMATS)})")


@dataclass
class ImageReport:
    """What happened to one photo. status: 'done' (fitted, or for detection: keypoints written), 'skipped'
    (a result exists), 'empty' (nobody found) or 'failed'; message: the one-line reason when not done."""

    input: Path
    name: str
    status: str = "pending"
    people_found: int = 0
    people_fitted: int = 0
    folder: Path | None = None
    message: str = ""
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    residuals_px: list[dict[str, float]] = field(default_factory=list)  # per person: median px per group


@dataclass
class CaptureReport:
    """The outcome of a run: one ImageReport per input photo, in input order. task: 'fit' or 'detect'."""

    images: list[ImageReport]
    out: Path
    seconds: float = 0.0
    task: str = "fit"

    def count(self, status: str) -> int:
        return sum(1 for i in self.images if i.status == status)

    @property
    def people_found(self) -> int:
        return sum(i.people_found for i in self.images)

    @property
    def people_fitted(self) -> int:
        return sum(i.people_fitted for i in self.images)

    @property
    def ok(self) -> bool:
        """No photo failed (skipped results and photos with nobody in them are not failures)."""
        return self.count("failed") == 0

    def problems(self) -> list[str]:
        """One line per photo that was not fitted, with the reason."""
        return [i.message for i in self.images if i.status in ("failed", "empty", "skipped")]

    def summary(self) -> str:
        n = len(self.images)
        found = self.people_found
        parts = [f"{n} image{'s' if n != 1 else ''}", f"{found} {'person' if found == 1 else 'people'} found"]
        if self.task == "fit":
            parts.append(f"{self.people_fitted} fitted")
        for status, word in (("skipped", "skipped (result exists)"), ("empty", "with nobody"),
                             ("failed", "failed")):
            if self.count(status):
                parts.append(f"{self.count(status)} {word}")
        return f"{', '.join(parts)}; results in {self.out}/ ({self.seconds:.1f} s)"


@dataclass
class Prepared:
    """One photo ready to fit: its pixels, everyone's keypoints (image size checked) and focal length."""

    path: Path
    image: np.ndarray
    keypoints: object  # ImageKeypoints
    focal: float | None = None
    focal_source: str = ""


def find_images(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Photos from a photo, a folder (its images, sorted, not recursive) or a list of either."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise BodyCaptureError("no input given: pass a photo or a folder of photos")
    images: list[Path] = []
    for item in items:
        target = Path(item)
        if target.is_dir():
            found = sorted(p for p in target.iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
            if not found:
                raise BodyCaptureError(f"{target}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
            images += found
        elif target.exists():
            images.append(target)
        else:
            raise BodyCaptureError(f"{target}: no such file or folder")
    return images


def result_names(paths: Sequence[Path]) -> list[str]:
    """A result folder name per input: its stem, or stem_suffix where two inputs share a stem
    (person.jpg -> person_jpg, person.png -> person_png); still unique when folders repeat a name."""
    stems = [p.stem for p in paths]
    names = [f"{p.stem}_{p.suffix.lstrip('.').lower()}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        k = seen.get(name, 0)
        seen[name] = k + 1
        unique.append(name if k == 0 else f"{name}_{k + 1}")
    return unique


def choose_threads(requested: int | None = None, concurrent_detection: bool = False) -> int:
    """torch threads for fitting. Measured on a 2-core machine (benchmarks/bench_first_result.py): a
    single fit gains little from a second thread, and a second thread that has to wait for a busy core
    makes every step of the optimiser wait (2x-10x slower). So: one thread per fitting process on up to
    4 cores, half the cores above that, minus the core the detection thread uses."""
    if requested is not None:
        return max(1, int(requested))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = 1 if cores <= 4 else cores // 2
    if concurrent_detection and threads > 1:
        threads -= 1
    return threads


def _check_keypoints(kp, image: np.ndarray, path: Path) -> None:
    """Keypoints must belong to this image: same size when the file says, every point inside it."""
    h, w = image.shape[:2]
    if kp.image_size is not None and tuple(int(s) for s in kp.image_size) != (h, w):
        raise BodyCaptureError(f"{kp.source}: keypoints are for a {kp.image_size[1]}x{kp.image_size[0]} image, "
                               f"{path.name} is {w}x{h}")
    pts = kp.points
    if not np.isfinite(pts).all():
        raise BodyCaptureError(f"{kp.source}: keypoints hold NaN or infinite values")
    seen = pts[..., 2] > 0
    xs, ys = pts[..., 0][seen], pts[..., 1][seen]
    if len(xs) and (xs.max() > w * 1.02 or ys.max() > h * 1.02 or xs.min() < -0.02 * w or ys.min() < -0.02 * h):
        raise BodyCaptureError(f"{kp.source}: keypoints reach outside the {w}x{h} image {path.name} "
                               f"(x {xs.min():.0f}..{xs.max():.0f}, y {ys.min():.0f}..{ys.max():.0f}): "
                               "keypoints for a different image?")
    kp.image_size = (h, w)


def _keypoint_file(path: Path, source: Path) -> Path:
    if source.is_dir():
        file = source / f"{path.stem}_keypoints.json"
        if not file.exists():
            raise BodyCaptureError(f"{file}: no keypoint file for {path.name}")
        return file
    return source


def prepare_image(path: Path, keypoints: Path | None = None, detector=None, max_people: int | None = None) -> Prepared:
    """Read a photo and its people: from `keypoints` (an OpenPose file or a folder of them) when given,
    else from `detector` (a MediaPipeDetector). Raises BodyCaptureError with a one-line reason."""
    from .keypoints.mediapipe import read_image
    from .keypoints.openpose import read_keypoints

    image = read_image(path)
    if keypoints is not None:
        kp = read_keypoints(_keypoint_file(path, keypoints))
        if max_people is not None and kp.num_people > max_people:
            log.warning("%s: %d people in the keypoint file, fitting the first %d (max_people)", path,
                        kp.num_people, max_people)
            kp = kp.take(range(max_people))
    else:
        kp = detector(image)
        kp.source = str(path)
    _check_keypoints(kp, image, path)
    return Prepared(path, image, kp)


def _prepared_stream(paths: Sequence[Path], options: CaptureOptions, make_detector) -> Iterator[tuple[Path, object]]:
    """(path, Prepared or BodyCaptureError) for each path, in order, produced by a background thread that
    runs ahead of the consumer by a few photos."""
    out: queue.Queue = queue.Queue(maxsize=max(2, options.batch_images))
    stop = threading.Event()

    def work():
        detector = None
        try:
            if options.keypoints is None:
                detector = make_detector()
            for path in paths:
                if stop.is_set():
                    break
                try:
                    item = prepare_image(path, options.keypoints, detector, options.max_people)
                except BodyCaptureError as err:
                    item = err
                out.put((path, item))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
            out.put((None, err))
        finally:
            if detector is not None:
                detector.close()
            out.put((None, None))

    thread = threading.Thread(target=work, name="bodycapture-detect", daemon=True)
    thread.start()  # now, not at the first next(): this function is not a generator itself
    return _drain(out, stop, thread)


def _drain(out: queue.Queue, stop: threading.Event, thread: threading.Thread) -> Iterator[tuple[Path, object]]:
    try:
        while True:
            path, item = out.get()
            if path is None:
                if item is not None:
                    raise item
                break
            yield path, item
    finally:
        stop.set()
        while thread.is_alive():  # let the worker finish its current photo and see the stop flag
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass


def fit_prepared(batch: Sequence[Prepared], model, config, device=None, progress=None):
    """Fit every person of the prepared photos as one batch. Focal length per photo: `config.focal_length`,
    else EXIF, else the image diagonal (fitting/camera.py `choose_focal`). Returns a FitResult whose
    `image_index` says which photo each person came from."""
    from .fitting import fit
    from .fitting.camera import choose_focal

    focal = []
    for item in batch:
        h, w = item.image.shape[:2]
        item.focal, item.focal_source = choose_focal(h, w, item.path, config.focal_length)
        focal += [item.focal] * item.keypoints.num_people
    return fit([item.keypoints for item in batch], model, config, device=device, focal_length=np.array(focal),
               progress=progress)


def _model_info(model) -> dict:
    return {"name": str(model.path.name if model.path else "model"), "gender": model.gender,
            "family": model.family.name}


def _progress(options: CaptureOptions, total: int, desc: str, unit: str, disable: bool = False):
    """A progress bar on stderr, shown only once the work has taken a second."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, delay=1.0, disable=disable or not options.progress,
                leave=False, dynamic_ncols=True)


def capture(inputs, model=None, config=None, options: CaptureOptions | None = None, detector_factory=None,
            **kwargs) -> CaptureReport:
    """Detect and fit every person in photos; write one result folder per photo under `options.out`.

    inputs: a photo, a folder of photos, or a list of them. model: a BodyModel (default: the bundled open
    model, SMPLify-X's component counts). config: a FitConfig (default: the paper's schedule). Either may
    also be a function without arguments that makes it: it is called once detection has started, so that
    importing torch and loading the model overlap with it.
    options: CaptureOptions, or its fields as keyword arguments (e.g. `out="results"`).
    detector_factory: makes the person detector (default: MediaPipeDetector with the options' limits).
    Returns a CaptureReport: per photo its status, people, result folder and the reason for a failure.
    """
    start = time.perf_counter()
    options = options or CaptureOptions(**{k: v for k, v in kwargs.items()})
    if not isinstance(options.out, Path):
        options.out = Path(options.out)
    options.formats = tuple(f.strip().lower() for f in options.formats if f.strip())
    options.validate()
    paths = find_images(inputs)
    names = result_names(paths)
    reports = [ImageReport(p, n) for p, n in zip(paths, names)]
    source = Path(options.keypoints) if options.keypoints is not None else None
    if source is not None:
        if not source.exists():
            raise BodyCaptureError(f"{source}: no such keypoint file or folder")
        if source.is_file() and len(paths) > 1:
            raise BodyCaptureError(f"{source}: one keypoint file for {len(paths)} images; pass a folder of "
                                   "NAME_keypoints.json files")
        options.keypoints = source

    from .io.results import check_writable, clean_stale_staging

    check_writable(options.out)
    clean_stale_staging(options.out)
    todo = []
    for report in reports:
        target = options.out / report.name
        if target.exists() and not options.overwrite:
            report.status, report.folder = "skipped", target
            report.message = f"{target}: exists, skipped (use --overwrite to replace it)"
        else:
            todo.append(report)
    by_path = {r.input: r for r in todo}

    if detector_factory is None:
        def detector_factory():
            from .keypoints.mediapipe import MediaPipeDetector

            return MediaPipeDetector(max_people=options.max_people, min_height=options.min_height)

    stream = _prepared_stream([r.input for r in todo], options, detector_factory) if todo else iter(())
    if todo:
        import torch

        torch.set_num_threads(choose_threads(options.threads, concurrent_detection=len(todo) > 1))
        model = model() if callable(model) and not hasattr(model, "parameter_sizes") else model
        model = model if model is not None else _default_model(options.device)
        from .fitting import FitConfig
        from .fitting.schedule import smpl_stages

        config = config() if callable(config) else config
        if config is None:
            config = FitConfig(stages=smpl_stages()) if model.family.name == "smpl" else FitConfig()
    bar = _progress(options, len(todo), "images", "image", disable=len(todo) < 2)
    batch: list[Prepared] = []

    def flush():
        if batch:
            _fit_and_write(batch, model, config, options, by_path, bar)
            batch.clear()

    try:
        for path, item in stream:
            report = by_path[path]
            if isinstance(item, BaseException):
                report.status, report.message = "failed", str(item)
                bar.update(1)
                continue
            report.people_found = item.keypoints.num_people
            if item.keypoints.num_people == 0:
                report.status, report.message = "empty", f"{path}: no person found"
                bar.update(1)
                continue
            batch.append(item)
            if len(batch) >= options.batch_images:
                flush()
        flush()
    finally:
        bar.close()
        if hasattr(stream, "close"):
            stream.close()
    report = CaptureReport(reports, options.out, time.perf_counter() - start)
    return report


def _default_model(device):
    from .models.zoo import load_model

    # SMPLify-X's settings for official files: 10 betas, 10 expressions, 12 hand PCA components
    return load_model(None, num_betas=10, num_expression_coeffs=10, num_pca_comps=12, device=device)


def _fit_and_write(batch: list[Prepared], model, config, options: CaptureOptions, by_path: dict, bar) -> None:
    from .io.results import ResultExistsError, save_result

    t0 = time.perf_counter()
    n = sum(b.keypoints.num_people for b in batch)
    stages = _progress(options, len(config.stages) + 1, f"fitting {n} {'person' if n == 1 else 'people'}", "stage")
    try:
        result = fit_prepared(batch, model, config, device=options.device, progress=lambda name: stages.update(1))
    finally:
        stages.close()
    per_image = (time.perf_counter() - t0) / len(batch)
    for i, item in enumerate(batch):
        report = by_path[item.path]
        people = np.nonzero(result.image_index.numpy() == i)[0]
        target = options.out / report.name
        try:
            save_result(target, result, people, item.keypoints, item.image, options.formats, _model_info(model),
                        overwrite=options.overwrite)
        except ResultExistsError as err:
            report.status, report.message = "skipped", str(err)
        except BodyCaptureError as err:
            report.status, report.message = "failed", str(err)
        else:
            report.status, report.folder = "done", target
            report.people_fitted = len(people)
            report.losses = [float(v) for v in result.loss[people]]
            report.residuals_px = [keypoint_residuals(result, p, item.keypoints.points[k])
                                   for k, p in enumerate(people)]
            log.info("%s: %d person(s) -> %s (loss %s; focal %.0f px from %s)", item.path.name, len(people), target,
                     ", ".join(f"{v:.4g}" for v in report.losses), item.focal, item.focal_source)
        report.seconds = per_image
        bar.update(1)


def keypoint_residuals(result, person: int, detected: np.ndarray) -> dict[str, float]:
    """Median distance in pixels between a fitted person's keypoints and the detected ones, per group
    (body, hands, face; groups with no detected point are left out)."""
    from .keypoints.layout import BODY, FACE, LEFT_HAND, RIGHT_HAND

    out = {}
    fitted = result.keypoints_2d[person].numpy()
    for group, idx in {"body": BODY, "hands": np.r_[LEFT_HAND, RIGHT_HAND], "face": FACE}.items():
        seen = detected[idx, 2] > 0
        if seen.any():
            out[group] = float(np.median(np.linalg.norm(fitted[idx][seen] - detected[idx, :2][seen], axis=1)))
    return out


def detect_images(inputs, out: str | Path, show: bool = False, max_people: int | None = 20,
                  min_height: float = 0.1, min_confidence: float = 0.5, progress: bool = True) -> CaptureReport:
    """Detect every person in photos and write, per photo, NAME_keypoints.json (OpenPose JSON, every
    person, as OpenPose writes it), NAME_people.json (what OpenPose JSON has no field for: box, score,
    MediaPipe's visibility and metric world landmarks) and with `show` NAME_rendered.png."""
    from .io.atomic import atomic_path
    from .io.draw import draw_keypoints
    from .keypoints.mediapipe import MediaPipeDetector
    from .keypoints.openpose import people_file, write_openpose, write_people

    start = time.perf_counter()
    out = Path(out)
    paths = find_images(inputs)
    reports = [ImageReport(p, n) for p, n in zip(paths, result_names(paths))]
    from .io.results import check_writable

    check_writable(out)
    options = CaptureOptions(out=out, max_people=max_people, min_height=min_height, progress=progress)
    options.validate()

    def make_detector():
        return MediaPipeDetector(min_detection_confidence=min_confidence, max_people=max_people,
                                 min_height=min_height)

    bar = _progress(options, len(paths), "detect", "image")
    by_path = {r.input: r for r in reports}
    try:
        for path, item in _prepared_stream(paths, options, make_detector):
            report = by_path[path]
            bar.update(1)
            if isinstance(item, BaseException):
                report.status, report.message = "failed", str(item)
                continue
            kp = item.keypoints
            report.people_found = kp.num_people
            file = out / f"{report.name}_keypoints.json"
            write_openpose(file, kp)
            write_people(people_file(file), kp)
            if show:
                with atomic_path(out / f"{report.name}_rendered.png") as tmp:
                    draw_keypoints(item.image, kp.points).save(tmp, format="PNG")
            report.folder = file
            if kp.num_people == 0:
                report.status, report.message = "empty", f"{path}: no person found"
            else:
                report.status = "done"
    finally:
        bar.close()
    return CaptureReport(reports, out, time.perf_counter() - start, task="detect")
