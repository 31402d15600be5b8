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
2. A detection process reads the photos and detects every person (keypoints/mediapipe.py) while the
   main process imports torch and loads the model, and later while it fits the previous batch (given
   keypoint files are read in the main process instead).
3. `batch_images` photos at a time are fitted as one batch (every person of every photo is an item).
4. Each photo's results are staged in a hidden folder unique to this process and renamed into place
   (io/results.py): a result appears whole or not at all.
One bad photo (unreadable, nobody in it, keypoints for another image) is one line in the report; the
others still run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cpus import IdleMeter, usable_cores
from .errors import BodyCaptureError
from .quiet import PINNED
from .io.results import MESH_FORMATS
from .io.images import IMAGE_SUFFIXES

__all__ = ["CaptureOptions", "ImageReport", "CaptureReport", "Prepared", "DetectionProcess", "capture", "detect_images",
           "find_images", "result_names", "prepare_image", "prepare_or_error", "fit_prepared", "load_fit_model",
           "choose_threads", "skip_existing"]

log = logging.getLogger(__name__)


IDLE_SLACK = 0.2  # a core counts as idle from 80 % idle up (fit_processes)


@dataclass
class CaptureOptions:
    """How a capture runs. The fitting itself is configured by `FitConfig` (fitting/schedule.py).

    keypoints: an OpenPose JSON file (one photo), or a folder of NAME_keypoints.json, used instead of
        detection. formats: mesh formats to write. batch_images: photos fitted together in one batch.
    max_people: at most this many people per photo, the largest first. min_height: people shorter than
        this in the photo are ignored (pixels when > 1, else a fraction of the image height).
    thorough: a finer search for people (a second level of tiles): crowds, wide shots; about 1 s more a photo.
    threads: torch threads (None: `choose_threads`). processes: processes that fit each batch (None:
    `fit_processes`, as many as idle cores where the platform forks safely; 1: this one only).
    progress: bars on stderr (shown after 1 s).
    report: report.html in every result folder and index.html at the top of `out` (io/report.py).
    """

    out: Path = Path("out")
    keypoints: Path | None = None
    formats: tuple[str, ...] = ("obj",)
    batch_images: int = 8
    overwrite: bool = False
    max_people: int | None = 20
    min_height: float = 0.1
    thorough: bool = False
    device: str | None = None
    threads: int | None = None
    processes: int | None = None
    progress: bool = True
    report: bool = True
    # clips (video files, and folders of numbered frames when `clip`): the frames used (video/frames.py),
    # tracks detected in fewer than `min_track_frames` frames dropped, overlay.mp4 written or not;
    # `sequence`: a SequenceConfig (video/sequence.py), a function that makes one, or None for its defaults
    clip: bool = False
    start: float = 0.0
    end: float | None = None
    fps: float | None = None
    every: int = 1
    source_fps: float | None = None  # a frame folder's rate (default 30), or to override a video's
    min_track_frames: int = 5
    overlay_video: bool = True
    sequence: object = None

    def detector_limits(self) -> dict:
        """The person detector's limits (MediaPipeDetector's keywords)."""
        return {"max_people": self.max_people, "min_height": self.min_height, "thorough": self.thorough}

    def clip_args(self, source) -> dict:
        """open_clip's arguments (video/frames.py) for the clip `source` with these options' frame choice."""
        return {"source": str(source), "start": self.start, "end": self.end, "fps": self.fps, "every": self.every,
                "source_fps": self.source_fps}

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
        if self.processes is not None and self.processes < 1:
            raise BodyCaptureError(f"processes must be at least 1, got {self.processes}")
        if self.every < 1 or self.min_track_frames < 1:
            raise BodyCaptureError(f"every and min_track_frames must be at least 1, got {self.every} and "
                                   f"{self.min_track_frames}")
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
    doubtful: list[str] = field(default_factory=list)  # one line per doubtful fit (fitting/quality.py)


@dataclass
class CaptureReport:
    """The outcome of a run: one ImageReport per input photo, in input order. task: 'fit' or 'detect'."""

    images: list[ImageReport]
    out: Path
    seconds: float = 0.0
    task: str = "fit"
    timings: dict[str, float] = field(default_factory=dict)  # seconds: model (import + load), fit, write;
    # first_keypoints: from the start of the run until the first photo's people were known here (not before the
    # model is ready); keypoints_ready: until the detection process had them (where one ran)
    index: Path | None = None  # index.html of the results, when written
    clips: list = field(default_factory=list)  # a ClipReport per clip (video/capture.py), in input order

    def count(self, status: str) -> int:
        """Photos and clips with this status."""
        return sum(1 for i in [*self.images, *self.clips] if i.status == status)

    @property
    def people_found(self) -> int:
        return sum(i.people_found for i in self.images)

    @property
    def people_fitted(self) -> int:
        """People fitted in the photos and tracks fitted in the clips."""
        return sum(i.people_fitted for i in [*self.images, *self.clips])

    @property
    def ok(self) -> bool:
        """No photo failed (skipped results and photos with nobody in them are not failures)."""
        return self.count("failed") == 0

    def summary(self) -> str:
        n = len(self.images)
        found = self.people_found
        parts = [f"{n} image{'s' if n != 1 else ''}", f"{found} {'person' if found == 1 else 'people'} found"]
        if self.clips:
            frames = sum(c.frames for c in self.clips)
            tracks = sum(len(c.tracks) for c in self.clips)
            seconds = sum(c.seconds for c in self.clips)
            clips = f"{len(self.clips)} clip{'s' if len(self.clips) != 1 else ''}"
            rate = f", {frames / seconds:.1f} frames/s" if seconds > 0 else ""
            parts = parts if self.images else []
            parts.append(f"{clips}: {frames} frames, {tracks} track{'s' if tracks != 1 else ''} fitted{rate}")
        if self.task == "fit" and (self.images or not self.clips):
            parts.append(f"{sum(i.people_fitted for i in self.images)} fitted")
            doubtful = sum(len(im.doubtful) for im in self.images)
            if doubtful:
                parts.append(f"{doubtful} doubtful")
        for status, word in (("skipped", "skipped (result exists)"), ("empty", "with nobody"),
                             ("failed", "failed")):
            if self.count(status):
                parts.append(f"{self.count(status)} {word}")
        where = f"results in {self.out}/" if self.count("done") or self.count("skipped") else "nothing written"
        view = f"; to look at them: {self.index}" if self.index is not None else ""
        took = f"{self.seconds:.1f} s"
        if "shards" in self.timings and self.seconds > 0:  # an --engine ray run: its throughput
            shards = int(self.timings["shards"])
            took += f", {shards} shard{'s' if shards != 1 else ''} on Ray"
            if self.images:
                fitted = sum(1 for i in self.images if i.status == "done")
                took += (f", {fitted / self.seconds:.2f} images/s, "
                         f"{sum(i.people_fitted for i in self.images) / self.seconds:.2f} people/s")
            if self.clips:  # frames of the clips fitted here, over the whole run
                frames = sum(c.frames for c in self.clips if c.status == "done")
                took += f", {frames / self.seconds:.2f} frames/s"
        return f"{', '.join(parts)}; {where} ({took}){view}"


@dataclass
class Prepared:
    """One photo ready to fit: its pixels, everyone's keypoints (image size checked) and focal length."""

    path: Path
    image: np.ndarray
    keypoints: object  # ImageKeypoints
    focal: float | None = None
    focal_source: str = ""


def skip_existing(report, options: CaptureOptions) -> bool:
    """Mark `report` (an ImageReport or a ClipReport) skipped when its result folder exists and options say
    not to overwrite it; whether it was."""
    target = options.out / report.name
    if target.exists() and not options.overwrite:
        report.status, report.folder = "skipped", target
        report.message = f"{target}: exists, skipped (use --overwrite to replace it)"
        return True
    return False


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def find_images(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Photos from a photo, a folder (its images, sorted, not recursive: subfolders that hold images are named in
    a warning, or in the error when the folder itself has none) or a list of either."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise BodyCaptureError("no input given: pass a photo or a folder of photos")
    images: list[Path] = []
    for item in items:
        target = Path(item)
        if target.is_dir():
            entries = sorted(target.iterdir())
            found = [p for p in entries if _is_image(p)]
            nested = [d.name for d in entries
                      if d.is_dir() and not d.name.startswith(".") and any(_is_image(p) for p in d.iterdir())]
            skipped = ""
            if nested:
                names = ", ".join(nested[:3]) + (", ..." if len(nested) > 3 else "")
                skipped = f"; not searched: {len(nested)} subfolder(s) with images ({names}): pass them too"
            if not found:
                raise BodyCaptureError(f"{target}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})"
                                       + skipped)
            if nested:
                log.warning("%s: %d image(s)%s", target, len(found), skipped)
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
    4 cores, half the cores above that, minus the core the detection process uses."""
    if requested is not None:
        return max(1, int(requested))
    cores = usable_cores()
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
    from .io.images import read_image
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
    from .keypoints.layout import MIN_BODY_POINTS, fittable

    usable = fittable(kp.points)
    if not usable.all():
        log.warning("%s: %d of %d people have fewer than %d detected body keypoints; not fitted", path,
                    int((~usable).sum()), kp.num_people, MIN_BODY_POINTS)
        kp = kp.take(np.nonzero(usable)[0])
    return Prepared(path, image, kp)


def prepare_or_error(path: Path, keypoints: Path | None = None, detector=None,
                     max_people: int | None = None) -> Prepared | BodyCaptureError:
    """`prepare_image`, with one photo's failure returned as a plain BodyCaptureError (one line, and it
    pickles, for the detection process) instead of raised: one photo's problem must not stop the others."""
    try:
        return prepare_image(path, keypoints, detector, max_people)
    except BodyCaptureError as err:
        return BodyCaptureError(str(err))
    except Exception as err:  # noqa: BLE001 - whatever a photo or the detector throws, it is this photo's
        log.debug("%s", err, exc_info=True)
        return BodyCaptureError(f"{path}: could not be read or detected ({type(err).__name__}: {err})")


def _prepared_inline(paths: Sequence[Path], options: CaptureOptions, make_detector) -> Iterator[tuple[Path, object]]:
    """(path, Prepared or BodyCaptureError) for each path, in order, prepared in this thread."""
    detector = make_detector() if options.keypoints is None else None
    try:
        for path in paths:
            yield path, prepare_or_error(path, options.keypoints, detector, options.max_people)
    finally:
        if detector is not None:
            detector.close()


def detection_job(paths: Sequence[Path], detector_kwargs: dict, max_people, clip: dict | None = None) -> dict:
    """What the detection process is asked to do (detect_worker.py). A single photo is detected with one
    detector thread unless `detector_kwargs` says otherwise: it runs while this process imports torch and
    loads the model, one core's work, and each thread builds its own graphs (about 0.4 CPU seconds of
    unpacking models), so a second thread takes that core for nothing (2-core AMD VM, 2026-12-02, interleaved:
    model ready 1.72-1.89 -> 1.49-1.67 s for coco_623 and 1.92-2.48 -> 1.73-1.88 s for coco_564, keypoints
    ready no later; the same keypoints either way, tests/test_pipeline.py). Several photos or a clip: the
    default (person_seeds.default_workers), for the photos detected while fits run."""
    if len(paths) == 1 and clip is None:
        detector_kwargs = {"workers": 1, **detector_kwargs}
    return {"paths": [str(p) for p in paths], "detector": detector_kwargs, "max_people": max_people,
            "clip": clip, "log_level": logging.getLogger("bodycapture").getEffectiveLevel()}


class DetectionProcess:
    """Detection in a separate process (detect_worker.py), running ahead of the fitting.

    On a 2-core machine this keeps both cores busy without oversubscribing either: the detector
    (MediaPipe) on one, the fitter (torch, one thread) on the other, and no GIL between them; the first
    photo is detected while the main process imports torch and loads the model. A thread was tried
    first and measured no faster: torch's import and the fitter's many small operations hold the GIL.
    The pipe between the two is the bound on how far ahead detection runs (about one photo). For a clip
    (`clip`: open_clip's arguments) the process decodes the frames itself and sends back only keypoints
    (video/capture.py `detected_frames`)."""

    def __init__(self, paths: Sequence[Path], detector_kwargs: dict, max_people, clip: dict | None = None):
        import pickle
        import subprocess
        import sys

        env = dict(os.environ)
        if env.pop(PINNED, None):  # the one-thread BLAS pin is for fitting (quiet.pin_native_threads), not detection
            env.pop("OMP_NUM_THREADS", None)
        self.process = subprocess.Popen([sys.executable, "-m", "bodycapture.detect_worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.clip = clip is not None
        self.first_ready: float | None = None  # time.time() when the first photo's result was ready there
        job = detection_job(paths, detector_kwargs, max_people, clip)
        try:
            pickle.dump(job, self.process.stdin)
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # reported when reading

    def __iter__(self) -> Iterator[tuple[Path, object]]:
        import pickle
        import subprocess

        try:
            while True:
                try:
                    path, item, *ready = pickle.load(self.process.stdout)  # a photo's: and when it was ready
                except (EOFError, pickle.UnpicklingError):
                    code = self.process.wait()
                    raise BodyCaptureError(f"the detector process ended unexpectedly (exit code {code})") from None
                if path is None:
                    if item is not None:
                        raise RuntimeError(f"the detector process failed:\n{item}")
                    try:  # its detector closed and exiting: its cores are free once it has
                        self.process.wait(timeout=5)
                    except subprocess.TimeoutExpired:  # stuck in its teardown: close() kills it
                        pass
                    return
                if ready and self.first_ready is None:
                    self.first_ready = ready[0]
                yield (path if self.clip else Path(path)), item
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


def fit_prepared(batch: Sequence[Prepared], model, config, device=None, progress=None, processes: int = 1):
    """Fit every person of the prepared photos as one batch. Focal length per photo: `config.focal_length`,
    else EXIF, else the image diagonal (fitting/camera.py `choose_focal`). processes: more than 1 deals the
    people to that many processes (fitting/processes.py; the same results, sooner where cores are free).
    Returns a FitResult whose `image_index` says which photo each person came from."""
    from .fitting import fit
    from .fitting.camera import choose_focal

    focal = []
    for item in batch:
        h, w = item.image.shape[:2]
        item.focal, item.focal_source = choose_focal(h, w, item.path, config.focal_length)
        focal += [item.focal] * item.keypoints.num_people
    keypoints = [item.keypoints for item in batch]
    if processes > 1:
        from .fitting.processes import fit_in_processes

        return fit_in_processes(keypoints, model, config, np.array(focal), processes, progress=progress)
    return fit(keypoints, model, config, device=device, focal_length=np.array(focal), progress=progress)


def fit_processes(options: CaptureOptions, people: int, idle: float | None = None,
                  meter: IdleMeter | None = None) -> int:
    """How many processes fit a batch of `people`, at most one per person (a person's fit does not depend on
    its batch mates, so the split changes no result: fitting/processes.py): `options.processes` where given;
    else, for 2 people or more, with torch's threads chosen automatically (`options.threads` None; a Ray task
    sets them), on the CPU, where the platform forks safely, as many as the cores that are idle now hold at
    torch's thread count (`idle`: that many idle cores; None: read from `meter`, a cpus.IdleMeter running
    since the run's start or its last batch, where this run's own processes count as idle: the detection
    process, which waits once it is a photo ahead of the fitting, and this one; None: measured now, 0.1 s). A
    core that another program keeps busy is left to it, as a second process there would slow both: measured,
    1.35x the idle time instead of 1.0x); else 1."""
    from .fitting.processes import can_fork

    if options.device not in (None, "cpu") or not can_fork():
        return 1
    if options.processes is not None:
        return max(1, min(people, options.processes))
    if options.threads is not None or people < 2:
        return 1
    import torch

    free = (meter or IdleMeter()).read() if idle is None else idle
    cores = usable_cores() if free is None else min(usable_cores(), int(free + IDLE_SLACK))
    processes = max(1, min(people, cores // torch.get_num_threads()))
    log.debug("%d people: %s idle cores, %d fitting process(es)", people,
              "?" if free is None else f"{free:.2f}", processes)
    return processes


def _model_info(model) -> dict:
    return {"name": str(model.path.name if model.path else "model"), "gender": model.gender,
            "family": model.family.name}


def _progress(options: CaptureOptions, total: int, desc: str, unit: str, disable: bool = False):
    """A progress bar on stderr, shown only once the work has taken a second."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, delay=1.0, disable=disable or not options.progress,
                leave=False, dynamic_ncols=True)


def capture(inputs, model=None, config=None, options: CaptureOptions | None = None, detector_factory=None,
            names: Sequence[str] | None = None, index: bool = True, **kwargs) -> CaptureReport:
    """Detect and fit every person in photos; write one result folder per photo under `options.out`.

    inputs: a photo, a folder of photos, or a list of them. model: a BodyModel (default: the bundled open
    model, SMPLify-X's component counts). config: a FitConfig (default: the paper's schedule). Either may
    also be a function without arguments that makes it: it is called once detection has started, so that
    importing torch and loading the model overlap with it.
    options: CaptureOptions, or its fields as keyword arguments (e.g. `out="results"`).
    detector_factory: makes the person detector (default: MediaPipeDetector with the options' limits).
    names: the result folder name of each photo and clip (default: from their file names, `result_names`);
    index: write index.html (a Ray shard leaves it to the run that started it).
    Returns a CaptureReport: per photo its status, people, result folder and the reason for a failure.
    """
    start = time.perf_counter()
    import dataclasses

    options = dataclasses.replace(options, **kwargs) if options is not None else CaptureOptions(**kwargs)
    if not isinstance(options.out, Path):
        options.out = Path(options.out)
    options.formats = tuple(f.strip().lower() for f in options.formats if f.strip())
    options.validate()
    from .video.frames import is_video

    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    is_clip = [is_video(i) or (options.clip and Path(i).is_dir()) for i in items]
    clips = [Path(i) for i, c in zip(items, is_clip) if c]
    photos = [i for i, c in zip(items, is_clip) if not c]
    missing = [c for c in clips if not c.exists()]
    if missing:
        raise BodyCaptureError(f"{missing[0]}: no such video file or frame folder")
    paths = find_images(photos) if photos or not clips else []
    if names is not None and len(names) != len(paths) + len(clips):
        raise ValueError(f"{len(names)} names for {len(paths) + len(clips)} inputs")
    names = list(names) if names is not None else result_names(paths + clips)
    reports = [ImageReport(p, n) for p, n in zip(paths, names)]
    clip_reports = [(p, n) for p, n in zip(clips, names[len(paths):])]
    source = Path(options.keypoints) if options.keypoints is not None else None
    if source is not None and clips:
        raise BodyCaptureError(f"{clips[0]}: --keypoints is for photos; clips are detected")
    if source is not None:
        if not source.exists():
            raise BodyCaptureError(f"{source}: no such keypoint file or folder")
        if source.is_file() and len(paths) > 1:
            raise BodyCaptureError(f"{source}: one keypoint file for {len(paths)} images; pass a folder of "
                                   "NAME_keypoints.json files")
        options.keypoints = source

    from .io.results import check_writable, clean_stale_staging

    created = not options.out.exists()
    check_writable(options.out)
    clean_stale_staging(options.out)
    todo = [report for report in reports if not skip_existing(report, options)]

    paths_todo = [r.input for r in todo]
    process = None
    if not todo:
        stream = iter(())
    elif options.keypoints is None and detector_factory is None:
        process = DetectionProcess(paths_todo, options.detector_limits(), options.max_people)
        stream = iter(process)
    else:
        stream = _prepared_inline(paths_todo, options, detector_factory)
    try:
        report = _run(stream, todo, reports, model, config, options, start, process)
        if clip_reports:
            report.clips = _run_clips(clip_reports, model, config, options, detector_factory)
            report.seconds = time.perf_counter() - start
        if index and options.report and (report.count("done") or report.count("skipped")):
            _write_index(report)
        return report
    finally:
        if process is not None:
            process.close()
        if hasattr(stream, "close"):
            stream.close()
        if created and options.out.is_dir() and not any(options.out.iterdir()):
            options.out.rmdir()  # nothing came out: leave no empty folder behind


def _run(stream, todo, reports, model, config, options: CaptureOptions, start: float,
         detection: DetectionProcess | None = None) -> CaptureReport:
    """Fit what `stream` prepares, `options.batch_images` photos per batch, and write the results.
    detection: the process that detects for `stream`, if one does."""
    timings = {"model": 0.0, "fit": 0.0, "write": 0.0}
    # the detection process waits while a batch is fitted (it runs about a photo ahead): its core can fit a share.
    # The idle cores are measured from here (then from each batch's end) to the batch, so that a single
    # photo's fit does not wait for a sample: this process's and the detection's work count as idle
    helpers = [detection.process.pid] if detection is not None else []
    meter = IdleMeter(helpers)
    if todo:
        t0 = time.perf_counter()
        model, config = _model_and_config(model, config, options, concurrent_detection=len(todo) > 1)
        timings["model"] = time.perf_counter() - t0
    bar = _progress(options, len(todo), "images", "image", disable=len(todo) < 2)
    batch: list[tuple[ImageReport, Prepared]] = []

    def flush(last: bool = False):  # the last batch: the detection process has ended
        nonlocal meter
        if batch:
            people = sum(item.keypoints.num_people for _, item in batch)
            processes = fit_processes(options, people, meter=meter)
            _fit_and_write(batch, model, config, options, bar, timings, processes)
            batch.clear()
            meter = IdleMeter(() if last else helpers)

    try:
        for report, (path, item) in zip(todo, stream):  # the stream keeps the order of `todo`
            if "first_keypoints" not in timings:
                timings["first_keypoints"] = time.perf_counter() - start
                if detection is not None and detection.first_ready is not None:  # start in wall-clock time
                    timings["keypoints_ready"] = detection.first_ready - (time.time() - timings["first_keypoints"])
            if isinstance(item, BaseException):
                report.status, report.message = "failed", str(item)
                bar.update(1)
                continue
            report.people_found = item.keypoints.num_people
            if item.keypoints.num_people == 0:
                report.status, report.message = "empty", f"{path}: no person found"
                bar.update(1)
                continue
            batch.append((report, item))
            if len(batch) >= options.batch_images:
                flush()
        try:  # the detector's end: its process closed, so that the last batch can use its cores
            for _ in stream:
                pass
        except (BodyCaptureError, RuntimeError) as err:  # every photo's keypoints came: only worth a warning
            log.warning("after the last photo: %s", err)
        flush(last=True)
    finally:
        bar.close()
    return CaptureReport(reports, options.out, time.perf_counter() - start, timings=timings)


def _model_and_config(model, config, options: CaptureOptions, concurrent_detection: bool):
    """The model and FitConfig of a run (made now where the caller gave functions that make them; the
    defaults where it gave None), with torch's threads set for it."""
    check_device(options.device)
    threads = choose_threads(options.threads, concurrent_detection=concurrent_detection)
    # the model first: loading it reads the file while torch is imported (models/zoo.py)
    model = model() if callable(model) and not hasattr(model, "parameter_sizes") else model
    model = model if model is not None else load_fit_model(device=options.device)
    import torch

    torch.set_num_threads(threads)
    from .fitting import FitConfig
    from .fitting.schedule import smpl_stages

    config = config() if callable(config) else config
    if config is None:
        config = FitConfig(stages=smpl_stages()) if model.family.name == "smpl" else FitConfig()
    return model, config


def _run_clips(clips: list[tuple[Path, str]], model, config, options: CaptureOptions, detector_factory=None) -> list:
    """Fit each clip (video/capture.py), one after the other; returns their ClipReports. detector_factory:
    as capture's (None: MediaPipe in a detection process)."""
    from .video.capture import capture_clip

    model, config = _model_and_config(model, config, options, concurrent_detection=True)
    sequence = sequence_config(options, config)
    out = []
    for path, name in clips:
        clip = capture_clip(path, name, model, sequence, options, detector_factory,
                            bar_factory=lambda total, desc, unit: _progress(options, total, desc, unit))
        out.append(clip)
        if clip.status == "done":
            log.info("%s: %d frames, %d tracks, %.1f s (%s)", path, clip.frames, len(clip.tracks), clip.seconds,
                     ", ".join(f"{k} {v:.1f} s" for k, v in clip.timings.items()))
    return out


def sequence_config(options: CaptureOptions, config):
    """The SequenceConfig of the options (`options.sequence`: one, a function that makes one, or None for
    the defaults) with `config` (a FitConfig) as its still fit."""
    import dataclasses

    from .video.sequence import SequenceConfig

    sequence = options.sequence() if callable(options.sequence) else options.sequence
    return dataclasses.replace(sequence if sequence is not None else SequenceConfig(), fit=config)


def _write_index(report: CaptureReport) -> None:
    """index.html at the top of the run's folder; a failure to write it is a warning, the results stand."""
    from .io.report import write_index

    try:
        report.index = write_index(report)
    except OSError as err:
        log.warning("%s: cannot write index.html (%s)", report.out, err.strerror or err)


def check_device(device) -> None:
    """A torch device that exists here, or a one-line error saying why not."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise BodyCaptureError(f"--device {device}: not a torch device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BodyCaptureError(f"--device {device}: CUDA is not available here (this torch is a "
                               f"{'CPU-only build' if torch.version.cuda is None else 'CUDA build without a usable GPU'})")


def load_fit_model(name=None, gender: str = "neutral", dtype=None, device=None):
    """The body model a capture fits: the bundled open model (None or 'open'), or official files, with
    SMPLify-X's settings for them: 10 betas, 10 expressions, 12 hand PCA components. dtype: a torch
    dtype or its name ('float64'); default float32. Called before torch is imported, it reads the file
    while torch imports (models/zoo.py)."""
    from .models.zoo import load_model

    return load_model(None if name in (None, "open") else name, gender=gender, num_betas=10,
                      num_expression_coeffs=10, num_pca_comps=12, dtype=dtype or "float32", device=device)


def _fit_and_write(batch: list[tuple[ImageReport, Prepared]], model, config, options: CaptureOptions, bar,
                   timings: dict, processes: int = 1) -> None:
    from .io.results import ResultExistsError, save_result

    t0 = time.perf_counter()
    n = sum(b.keypoints.num_people for _, b in batch)
    stages = _progress(options, len(config.stages) + 1, f"fitting {n} {'person' if n == 1 else 'people'}", "stage")
    try:
        result = fit_prepared([b for _, b in batch], model, config, device=options.device,
                              progress=lambda name: stages.update(1), processes=processes)
    finally:
        stages.close()
    timings["fit"] += time.perf_counter() - t0
    per_image = (time.perf_counter() - t0) / len(batch)
    t0 = time.perf_counter()
    for i, (report, item) in enumerate(batch):
        people = np.nonzero(result.image_index.numpy() == i)[0]
        target = options.out / report.name
        bad = [k for k, p in enumerate(people) if not _finite_fit(result, p)]
        if bad:  # never written as if fitted
            report.status = "failed"
            report.message = (f"{item.path}: the fit of person {', '.join(str(k) for k in bad)} did not reach finite "
                              "values; nothing written")
            bar.update(1)
            continue
        try:
            save_result(target, result, people, item.keypoints, item.image, options.formats, _model_info(model),
                        overwrite=options.overwrite, report=options.report,
                        info={"input": str(item.path), "focal_source": item.focal_source})
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
            if result.quality is not None:
                for k, p in enumerate(people):
                    if result.quality.doubtful[p]:
                        line = f"{item.path}: person {k}: doubtful fit ({'; '.join(result.quality.reasons[p])})"
                        report.doubtful.append(line)
                        log.warning(line)
            log.info("%s: %d person(s) -> %s (loss %s; focal %.0f px from %s)", item.path.name, len(people), target,
                     ", ".join(f"{v:.4g}" for v in report.losses), item.focal, item.focal_source)
        report.seconds = per_image
        bar.update(1)
    timings["write"] += time.perf_counter() - t0


def _finite_fit(result, person: int) -> bool:
    """The fit of `person` has finite vertices, parameters and loss."""
    import torch

    return bool(torch.isfinite(result.vertices[person]).all() and torch.isfinite(result.loss[person])
                and all(torch.isfinite(v[person]).all() for v in result.params.values()))


def keypoint_residuals(result, person: int, detected: np.ndarray) -> dict[str, float]:
    """Median distance in pixels between a fitted person's keypoints and the detected ones, per group
    (body, hands, face; groups with no detected point are left out)."""
    from .keypoints.layout import REPORT_GROUPS

    out = {}
    fitted = result.keypoints_2d[person].numpy()
    for group, idx in REPORT_GROUPS.items():
        seen = detected[idx, 2] > 0
        if seen.any():
            out[group] = float(np.median(np.linalg.norm(fitted[idx][seen] - detected[idx, :2][seen], axis=1)))
    return out


def detect_images(inputs, out: str | Path, show: bool = False, max_people: int | None = 20,
                  min_height: float = 0.1, min_confidence: float = 0.5, progress: bool = True,
                  thorough: bool = False) -> CaptureReport:
    """Detect every person in photos and write, per photo, NAME_keypoints.json (OpenPose JSON, every
    person, as OpenPose writes it), NAME_people.json (what OpenPose JSON has no field for: box, score,
    MediaPipe's visibility and metric world landmarks) and with `show` NAME_rendered.png."""
    from .io.atomic import atomic_path
    from .io.draw import draw_keypoints
    from .io.overlay import MAX_SIDE as OVERLAY_MAX_SIDE
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
                                 min_height=min_height, thorough=thorough)

    bar = _progress(options, len(paths), "detect", "image")
    try:
        for report, (path, item) in zip(reports, _prepared_inline(paths, options, make_detector)):
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
                    draw_keypoints(item.image, kp.points, max_side=OVERLAY_MAX_SIDE).save(tmp, format="PNG")
            report.folder = file
            if kp.num_people == 0:
                report.status, report.message = "empty", f"{path}: no person found"
            else:
                report.status = "done"
    finally:
        bar.close()
    return CaptureReport(reports, out, time.perf_counter() - start, task="detect")
