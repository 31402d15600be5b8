"""Beyond one machine: a capture's photos split into shards, each shard a Ray task that runs the library
pipeline (`pipeline.capture`) and writes its results atomically into the shared output folder.

    from bodycapture.engine.ray import RayOptions, capture_ray
    report = capture_ray("photos/", options=CaptureOptions(out="out"), ray=RayOptions(workers=2))

How a run goes:
1. The inputs are listed and named once, here (result names must not depend on how they are sharded);
   photos whose result folder exists are skipped (unless overwrite), the rest cut into shards of
   `shard_images`. A shard's id is a digest of its photos and names, so a re-run finds the same shards.
2. Ray starts (a local instance on this machine without `address`), and every shard not recorded as done
   in the manifest (`OUT/.bodycapture-ray/manifest.json`) is submitted as a task with `num_cpus =
   cpus_per_task` (also its torch threads; detection runs inside the task, so a task never uses more
   cores than it asked for) and `num_gpus = gpus_per_task`. Ray retries a task whose worker died
   (`max_retries`); a retried attempt leaves alone what an earlier attempt of the same run wrote (a marker
   file holds the shard's start; results written since are that run's), so no result is written twice,
   and fits the rest as asked (with overwrite, old results too). A shard that still fails is listed with
   its error.
3. As shards finish, one progress bar moves and the manifest is rewritten atomically (done shards with
   their photos' reports, failed shards with their errors). The closing line gives the throughput.
The engine is Ray's: scheduling, retries and resources are its, not ours. Workers need bodycapture (the
same version) installed, and the inputs and `out` on a filesystem they all see.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..cpus import usable_cores
from ..errors import BodyCaptureError

__all__ = ["RayOptions", "capture_ray", "make_shards", "run_shard", "import_ray", "MANIFEST"]

log = logging.getLogger(__name__)

MANIFEST = Path(".bodycapture-ray") / "manifest.json"
INSTALL = 'pip install "bodycapture[ray]"'


@dataclass
class RayOptions:
    """address: a running cluster ("auto", "ray://host:10001", "host:6379"); None starts a local instance
    on this machine. workers: tasks at once (default: as many as the cluster's CPUs allow).
    cpus_per_task: CPUs a task asks for, and its torch threads. gpus_per_task: GPUs a task asks for (it then
    fits on "cuda"). shard_images: photos per task. shard_frames: frames of a clip per task (whole windows
    of the sequence fit; engine/ray_clips.py). max_retries: further attempts of a task whose worker died."""

    address: str | None = None
    workers: int | None = None
    cpus_per_task: int = 1
    gpus_per_task: float = 0.0
    shard_images: int = 8
    shard_frames: int = 320  # 10 windows: one window of burn-in per shard is 10 % more fitting
    max_retries: int = 2

    def validate(self) -> None:
        if min(self.cpus_per_task, self.shard_images, self.shard_frames) < 1 or self.max_retries < 0:
            raise BodyCaptureError("cpus_per_task, shard_images and shard_frames must be at least 1, max_retries at "
                                   "least 0")
        if self.workers is not None and self.workers < 1:
            raise BodyCaptureError(f"workers must be at least 1, got {self.workers}")
        if not self.gpus_per_task >= 0:
            raise BodyCaptureError(f"gpus_per_task must be >= 0, got {self.gpus_per_task}")


def import_ray():
    """The ray module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BodyCaptureError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def make_shards(paths: list[Path], names: list[str], size: int) -> list[dict]:
    """Consecutive groups of `size` photos: [{"id", "paths", "names"}]; the id is a digest of the group."""
    shards = []
    for start in range(0, len(paths), size):
        group = [str(p.resolve()) for p in paths[start : start + size]]
        group_names = names[start : start + size]
        digest = hashlib.sha1(json.dumps([group, group_names]).encode()).hexdigest()[:12]
        shards.append({"id": digest, "paths": group, "names": group_names})
    return shards


def run_shard(shard: dict, model_args: dict, config, options, run_id: str, detector_factory=None) -> list[dict]:
    """One shard, on a Ray worker: `pipeline.capture` on its photos (detection in this process, torch
    threads = options.threads), results written into options.out. Returns each photo's report as a dict,
    in the shard's order. A retried attempt (its marker exists) leaves alone the photos that an earlier
    attempt of this run already wrote, and reports them as done."""
    from ..pipeline import ImageReport, capture

    out = Path(options.out)
    marker = out / MANIFEST.parent / "attempts" / f"{run_id}-{shard['id']}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    if marker.exists():
        started = float(marker.read_text() or 0)
    else:
        started = time.time()
        marker.write_text(repr(started))
    earlier = {n for n in shard["names"] if _written_since(out / n, started)}
    todo = [(p, n) for p, n in zip(shard["paths"], shard["names"]) if n not in earlier]
    reports = {}
    if todo:
        detector = None if options.keypoints is not None else detector_factory or inline_detector(options)
        report = capture([Path(p) for p, _ in todo], model=lambda: _cached_model(**model_args), config=config,
                         options=dataclasses.replace(options, progress=False), detector_factory=detector,
                         names=[n for _, n in todo], index=False)
        reports = {im.name: _image_dict(im) for im in report.images}
    from ..io.report import folder_summary

    for p, n in zip(shard["paths"], shard["names"]):
        if n in earlier:
            people = folder_summary(out / n)["people"]
            reports[n] = _image_dict(ImageReport(Path(p), n, "done", people, people, out / n,
                                                 "written by an earlier attempt of this run"))
    return [reports[n] for n in shard["names"]]


def inline_detector(options):
    """A factory of the MediaPipe detector with the options' limits, run in the task's own process (no
    detection process: a task uses only the cores it asked for, `options.threads`, which are also the
    detector's worker threads; Ray does not pin a task to its CPUs, so the detector would otherwise take
    every core the machine has, as the other tasks do)."""
    from ..keypoints.mediapipe import MediaPipeDetector

    limits = options.detector_limits()
    return lambda: MediaPipeDetector(**limits, workers=options.threads)


def _written_since(folder: Path, since: float) -> bool:
    """A published result folder whose parameters were written at or after `since` (epoch seconds)."""
    try:
        return (folder / "params.npz").stat().st_mtime >= since
    except OSError:
        return False


_MODELS: dict = {}


def _cached_model(**model_args):
    """The worker process's model: loaded by its first shard, reused by the next ones (a worker runs many)."""
    key = json.dumps(model_args, sort_keys=True, default=str)
    if key not in _MODELS:
        from ..pipeline import load_fit_model

        _MODELS[key] = load_fit_model(**model_args)
    return _MODELS[key]


def _image_dict(im) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(im).items()}


def _image_report(d: dict):
    from ..pipeline import ImageReport

    d = dict(d)
    d["input"] = Path(d["input"])
    d["folder"] = Path(d["folder"]) if d.get("folder") else None
    return ImageReport(**d)


def _read_manifest(out: Path) -> dict:
    try:
        data = json.loads((out / MANIFEST).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("shards"), dict) else {"shards": {}}
    except (OSError, ValueError):
        return {"shards": {}}


def _write_manifest(out: Path, manifest: dict) -> None:
    from ..io.atomic import write_bytes_atomic

    write_bytes_atomic(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())


def capture_ray(inputs, model_args: dict | None = None, config=None, options=None, ray: RayOptions | None = None,
                detector_factory=None, **kwargs):
    """`pipeline.capture` over a Ray cluster (module doc; clips: engine/ray_clips.py). model_args:
    `load_fit_model`'s arguments (name, gender, dtype, device), loaded on each worker; config: a FitConfig.
    options: CaptureOptions or its fields as keywords. detector_factory: makes the detector in each task
    (default: MediaPipe with the options' limits; it is sent to the workers, so it must pickle).
    Returns a CaptureReport as `capture` does, in input order."""
    from ..pipeline import CaptureOptions, CaptureReport, _write_index, find_images, result_names
    from ..video.frames import is_video

    start = time.perf_counter()
    ray_options = ray or RayOptions()
    ray_options.validate()
    options = dataclasses.replace(options, **kwargs) if options is not None else CaptureOptions(**kwargs)
    options.out = Path(options.out)
    options.validate()
    ray_mod = import_ray()
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    is_clip = [is_video(i) or (options.clip and Path(i).is_dir()) for i in items]
    clips = [Path(i) for i, c in zip(items, is_clip) if c]
    missing = [c for c in clips if not c.exists()]
    if missing:
        raise BodyCaptureError(f"{missing[0]}: no such video file or frame folder")
    if clips and options.keypoints is not None:
        raise BodyCaptureError(f"{clips[0]}: --keypoints is for photos; clips are detected")
    photos = [i for i, c in zip(items, is_clip) if not c]
    paths = find_images(photos) if photos or not clips else []
    names = result_names(paths + clips)
    from ..io.results import check_writable, clean_stale_staging

    check_writable(options.out)
    clean_stale_staging(options.out)
    device = "cuda" if ray_options.gpus_per_task > 0 else options.device
    task_options = dataclasses.replace(options, threads=ray_options.cpus_per_task, device=device, progress=False)
    model_args = dict(model_args or {})
    if device is not None:
        model_args["device"] = device

    def started():
        _start_ray(ray_mod, ray_options)
        _check_resources(ray_mod.cluster_resources(), ray_options)
        return ray_mod

    images, shards, failed = _photos_on_ray(paths, names[: len(paths)], model_args, config, options, task_options,
                                            ray_options, started, detector_factory)
    report = CaptureReport(images, options.out, time.perf_counter() - start)
    if clips:
        from .ray_clips import capture_clip_ray

        for path, name in zip(clips, names[len(paths):]):
            clip = capture_clip_ray(path, name, model_args, config, options, task_options, ray_options, started,
                                    detector_factory)
            report.clips.append(clip)
            shards += int(clip.timings.get("shards", 0))
            failed += int(clip.timings.get("shards_failed", 0))
    report.seconds = time.perf_counter() - start
    report.timings["shards"] = float(shards)
    report.timings["shards_failed"] = float(failed)
    if options.report and (report.count("done") or report.count("skipped")):
        _write_index(report)
    return report


def _photos_on_ray(paths, names, model_args, config, options, task_options, ray_options, started,
                   detector_factory) -> tuple[list, int, int]:
    """The photos' part of `capture_ray`: -> (ImageReports in input order, shards, shards failed)."""
    from ..pipeline import ImageReport, _progress, skip_existing

    reports = {n: ImageReport(p, n) for p, n in zip(paths, names)}
    todo_paths, todo_names = [], []
    for p, n in zip(paths, names):
        if not skip_existing(reports[n], options):
            todo_paths.append(p)
            todo_names.append(n)
    shards = make_shards(todo_paths, todo_names, ray_options.shard_images)
    manifest = _read_manifest(options.out)
    run_id = f"{os.getpid()}-{int(time.time())}"
    pending = [s for s in shards if manifest["shards"].get(s["id"], {}).get("status") != "done"]
    failed = 0
    if pending:
        ray_mod = started()
        remote = remote_task(ray_mod, run_shard, ray_options)
        bar = _progress(options, sum(len(s["paths"]) for s in pending), "images", "image")
        calls = [(s["id"], (s, model_args, config, task_options, run_id, detector_factory)) for s in pending]
        by_id = {s["id"]: s for s in pending}
        try:
            for key, images, reason in run_tasks(ray_mod, remote, calls, task_limit(ray_mod, ray_options)):
                shard = by_id[key]
                if reason is None:
                    manifest["shards"][shard["id"]] = {"status": "done", "names": shard["names"], "images": images}
                    for d in images:
                        reports[d["name"]] = _image_report(d)
                else:
                    manifest["shards"][shard["id"]] = {"status": "failed", "names": shard["names"], "error": reason}
                    failed += 1
                    for n in shard["names"]:
                        reports[n].status, reports[n].message = "failed", f"{reports[n].input}: shard failed: {reason}"
                _write_manifest(options.out, manifest)
                bar.update(len(shard["paths"]))
        finally:
            bar.close()
    for shard in shards:  # done in an earlier run: their photos' reports from the manifest
        entry = manifest["shards"].get(shard["id"], {})
        if shard not in pending and entry.get("status") == "done":
            for d in entry.get("images", []):
                reports[d["name"]] = _image_report(d)
    return [reports[n] for n in names], len(shards), failed


def task_limit(ray_mod, options: RayOptions) -> int:
    """Tasks at once: `workers`, else as many as the cluster's CPUs allow."""
    return options.workers or max(1, int(ray_mod.cluster_resources().get("CPU", 1) // options.cpus_per_task))


def remote_task(ray_mod, function, options: RayOptions):
    """`function` as a Ray task with the run's resources and retries."""
    return ray_mod.remote(num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task,
                          max_retries=options.max_retries, retry_exceptions=False)(function)


def run_tasks(ray_mod, remote, calls: list[tuple], limit: int):
    """Submit `remote.remote(*args)` for each (key, args) in `calls`, at most `limit` running at once;
    yield (key, result, None) as each finishes, or (key, None, reason) when Ray gave up on it (its worker
    died more often than the retries allow, or it raised)."""
    waiting = list(calls)
    running: dict = {}
    while waiting or running:
        while waiting and len(running) < limit:
            key, args = waiting.pop(0)
            running[remote.remote(*args)] = key
        done, _ = ray_mod.wait(list(running), num_returns=1)
        key = running.pop(done[0])
        try:
            result, reason = ray_mod.get(done[0]), None
        except ray_mod.exceptions.RayError as err:
            result, reason = None, _one_line(err)
        yield key, result, reason


def _start_ray(ray_mod, options: RayOptions) -> None:
    if ray_mod.is_initialized():
        return
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if options.address is None:
        cpus = usable_cores()
        # --workers caps the local instance itself: a clip's tasks are submitted all at once (ray_clips.py)
        kwargs["num_cpus"] = options.workers * options.cpus_per_task if options.workers else cpus
    import contextlib
    import io

    from ..quiet import native_stderr_silenced

    try:  # Ray's start-up notices (token authentication, ...) are not ours to show; its errors are
        with native_stderr_silenced(), contextlib.redirect_stderr(io.StringIO()):
            ray_mod.init(address=options.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise BodyCaptureError(f"Ray at {options.address or 'a local instance'}: {_one_line(err)}") from None


def _check_resources(resources: dict, options: RayOptions) -> None:
    """A task that asks for more than any the cluster has would wait for ever (Ray keeps it pending):
    say so instead. resources: ray.cluster_resources()."""
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if options.cpus_per_task > cpus:
        raise BodyCaptureError(f"--cpus-per-task {options.cpus_per_task}: the Ray cluster has {cpus:g} CPUs")
    if options.gpus_per_task > gpus:
        raise BodyCaptureError(f"--gpus-per-task {options.gpus_per_task:g}: the Ray cluster has "
                               f"{'no GPU' if gpus == 0 else f'{gpus:g} GPUs'}")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[-1] if text else type(err).__name__)[:300]
