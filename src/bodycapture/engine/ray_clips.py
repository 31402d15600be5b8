"""Clips on a Ray cluster: a video (or a folder of frames) cut into shards of frames that Ray tasks detect
and fit, joined into the clip's tracks by the process that started the run (video/shards.py says what is
exact and what is not).

How one clip goes: per shard K four Ray tasks, chained by their results (Ray runs a task once the results
it takes exist, so shard 0 is fitted while shard 5 is still being detected; no scheduler of ours):
1. detect K: decode and detect the shard's own frames -> `OUT/.bodycapture-ray/clips/NAME-DIGEST/detect-K.pkl`;
2. link K: the tracker (tracks.py) continued from link K-1 over shard K's frames: the local run's track ids
   (`shards.link_shard`; a chain of small tasks that take no CPU);
3. shapes K: the first window of every track that starts in shard K, fitted alone -> those tracks' shapes;
4. fit K: the shard's frames and one window before them, every shape given (shapes 0..K).
A clip of one shard skips step 3: its fit frees each shape in the track's first window as a local run does,
and its results are the local run's, bit for bit.
The driver then cross-fades the shards' overlaps into tracks and writes the result folder as a local run
does (video/capture.py `finish_clip`: animation files, overlay video, report).
Detections, shapes and shard fits are also files written atomically in the job folder; a re-run of an
interrupted job (the digest covers the clip, its time window, the shard plan and the fit settings) reads
the files that exist instead of running their tasks, and the manifest records each clip's state. The job
folder is removed once the result is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import BodyCaptureError
from .ray import MANIFEST, _cached_model, _one_line, _read_manifest, _write_manifest, inline_detector

__all__ = ["capture_clip_ray", "detect_task", "shapes_task", "fit_task"]

log = logging.getLogger(__name__)


def _save(path: Path, obj) -> None:
    from ..io.atomic import write_bytes_atomic

    write_bytes_atomic(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


# ---------------------------------------------------------------------------------------------- tasks
def detect_task(clip_args: dict, shard, options, path: str, detector_factory=None) -> list[tuple]:
    """`shards.detect_shard` with the options' detector, its rows also written to `path`."""
    from ..video.shards import detect_shard

    rows = detect_shard(clip_args, shard, detector_factory or inline_detector(options))
    _save(Path(path), rows)
    return rows


def _rows(detections: list[list[tuple]], links: list, a: int, b: int) -> list[tuple]:
    """(position, FrameInfo, kp, track ids) of the frames [a, b) of these shards' detections and links."""
    rows = []
    for frames, link in zip(detections, links):
        for position, frame, kp in frames:
            if a <= position < b:
                rows.append((position, frame, kp, link.ids.get(position, np.zeros(0, dtype=np.int64))))
    return sorted(rows, key=lambda r: r[0])


def _task_model(model_args: dict, config, options):
    """The worker's model (cached across its tasks), the sequence config, torch threads set."""
    from ..pipeline import _model_and_config, sequence_config

    model, config = _model_and_config(lambda: _cached_model(**model_args), config, options, concurrent_detection=False)
    return model, sequence_config(options, config)


def shapes_task(shard, rows: list[tuple], linked, model_args: dict, config, options, size, focal: float,
                path: str) -> dict[int, np.ndarray]:
    """The shapes of the tracks that start in a shard (its detections and ShardLink) -> {track: betas},
    also written to `path`."""
    from ..video.shards import first_windows, fit_shapes

    shapes = {}
    if linked.new:
        model, sequence = _task_model(model_args, config, options)
        rows = _rows([rows], [linked], shard.start, shard.end)
        starts = {t: w for t, w in first_windows(rows, sequence.window).items() if t in set(linked.new)}
        shapes = fit_shapes(rows, starts, model, sequence, size, focal)
    _save(Path(path), shapes)
    return shapes


def fit_task(shard, args: tuple, path: str, *inputs) -> dict[int, dict]:
    """Fit a shard's frames [begin, end) -> its tracks (`track_arrays`), also written to `path`.
    args: (model_args, config, options, size, focal, max_gap); inputs: the detections and links of the
    shard before (when its burn-in reaches into it) and of this one, then every shapes result so far."""
    from ..video.shards import fit_shard

    model_args, config, options, size, focal, max_gap = args
    count = 4 if shard.begin < shard.start else 2
    detections, links, shape_parts = inputs[0:count:2], inputs[1:count:2], inputs[count:]
    shapes = {t: b for part in shape_parts for t, b in part.items()}
    rows = _rows(list(detections), list(links), shard.begin, shard.end)
    tracks = {}
    if rows and any(len(r[3]) for r in rows):
        model, sequence = _task_model(model_args, config, options)
        present = {int(t) for r in rows for t in r[3]}
        tracks = fit_shard(rows, {t: shapes[t] for t in present if t in shapes}, model, sequence, size, focal, max_gap)
    _save(Path(path), tracks)
    return tracks


# --------------------------------------------------------------------------------------------- driver
def _job_folder(out: Path, name: str, clip_args: dict, plan: list, sequence, model_args: dict, options) -> Path:
    """The job's folder of intermediate files; its name's digest changes with anything that changes them."""
    key = json.dumps([str(Path(clip_args["source"]).resolve()), clip_args, [dataclasses.astuple(s) for s in plan],
                      repr(sequence), model_args, options.detector_limits()], sort_keys=True, default=str)
    return out / MANIFEST.parent / "clips" / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def capture_clip_ray(source: Path, name: str, model_args: dict, config, options, task_options, ray_options,
                     started, detector_factory=None):
    """One clip over Ray (module doc). options: the run's CaptureOptions; task_options: the tasks' (threads,
    device); started() starts Ray and returns the module. Returns a ClipReport; its timings give the
    seconds of the tasks' part and of writing, and the shards (run and failed)."""
    from ..fitting.camera import default_focal
    from ..pipeline import _model_and_config, _progress, load_fit_model, sequence_config, skip_existing
    from ..video.capture import ClipReport, finish_clip
    from ..video.frames import open_clip
    from ..video.sequence import SequenceFitter
    from ..video.shards import link_shard, plan_shards, stitch
    from ..video.tracks import TrackerConfig

    start = time.perf_counter()
    report = ClipReport(source, name)
    if skip_existing(report, options):
        return report
    clip_args = options.clip_args(source)
    try:
        clip = open_clip(**clip_args)
    except BodyCaptureError as err:
        report.status, report.message = "failed", str(err)
        return report
    report.fps, size = float(clip.fps), tuple(int(s) for s in clip.size)
    model, fit_config = _model_and_config(lambda: load_fit_model(**model_args), config, options,
                                          concurrent_detection=False)
    sequence = sequence_config(options, fit_config)
    focal = float(fit_config.focal_length) if fit_config.focal_length is not None else default_focal(*size)
    plan = plan_shards(clip.count, ray_options.shard_frames, sequence.window)
    job = _job_folder(options.out, name, clip_args, plan, sequence, model_args, options)
    job.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(options.out)
    record = manifest.setdefault("clips", {}).setdefault(name, {})
    record.update({"job": job.name, "shards": len(plan), "status": "running"})
    record.pop("error", None)
    _write_manifest(options.out, manifest)
    timings = {"tasks": 0.0, "write": 0.0, "shards": float(len(plan)), "shards_failed": 0.0}
    ray_mod = started()
    resources = {"num_cpus": ray_options.cpus_per_task, "num_gpus": ray_options.gpus_per_task,
                 "max_retries": ray_options.max_retries, "retry_exceptions": False}
    detect = ray_mod.remote(**resources)(detect_task)
    link_remote = ray_mod.remote(num_cpus=0, max_retries=ray_options.max_retries)(link_shard)
    shapes_remote = ray_mod.remote(**resources)(shapes_task)
    fit_remote = ray_mod.remote(**resources)(fit_task)
    common = (model_args, config, task_options, size, focal)

    def existing(kind: str, k: int):
        path = job / f"{kind}-{k}.pkl"
        return _load(path) if path.exists() else None

    tick = time.perf_counter()
    detections, links, shapes, fits = [], [], [], []
    watch: dict = {}  # refs whose completion moves the bar: ref -> frames
    for s in plan:
        frames = s.end - s.start
        d = existing("detect", s.index)
        if d is None:
            d = detect.remote(clip_args, s, task_options, str(job / f"detect-{s.index}.pkl"), detector_factory)
            watch[d] = frames
        detections.append(d)
        links.append(link_remote.remote(links[-1] if links else None, d))
        if len(plan) > 1:  # one shard: its fit frees the shapes in their first windows, as a local run does
            h = existing("shapes", s.index)
            shapes.append(h if h is not None else
                          shapes_remote.remote(s, d, links[-1], *common, str(job / f"shapes-{s.index}.pkl")))
        f = existing("fit", s.index)
        if f is None:
            before = [detections[-2], links[-2]] if s.begin < s.start else []
            f = fit_remote.remote(s, (*common, TrackerConfig().max_gap), str(job / f"fit-{s.index}.pkl"),
                                  *before, d, links[-1], *shapes)
            watch[f] = frames
        fits.append(f)
    bar = _progress(options, 2 * clip.count, f"{name}: detect + fit", "frame")
    bar.update(2 * clip.count - sum(watch.values()))  # done by an earlier run
    problem = None
    try:
        pending = list(watch)
        while pending:
            done, pending = ray_mod.wait(pending, num_returns=1)
            try:
                ray_mod.get(done[0])
            except ray_mod.exceptions.RayError as err:  # the rest still runs: what finishes is kept for a re-run
                timings["shards_failed"] += 1
                problem = problem or _cause(err)
            bar.update(watch[done[0]])
        if problem is None:
            fitted = [ray_mod.get(f) if not isinstance(f, dict) else f for f in fits]
            linked = [ray_mod.get(x) for x in links]
            report.frames = sum(link.frames for link in linked)
    finally:
        bar.close()
    timings["tasks"] = time.perf_counter() - tick
    if problem is not None:
        report.status, report.message = "failed", problem if str(source) in problem else f"{source}: {problem}"
        report.timings, report.seconds = timings, time.perf_counter() - start
        record["status"], record["error"] = "failed", report.message
        _write_manifest(options.out, manifest)
        return report
    projector = SequenceFitter(model, sequence, size, focal_length=focal)
    hand_axis_angle = model.parameter_sizes().get("left_hand_pose", 0) == 45
    tracks = stitch(fitted, plan, projector.project, hand_axis_angle) if any(link.ids for link in linked) else {}
    report = finish_clip(report, tracks, model, focal, size, options, clip_args, timings, start)
    record["status"] = report.status
    _write_manifest(options.out, manifest)
    if report.status in ("done", "empty"):
        shutil.rmtree(job, ignore_errors=True)
    return report


def _cause(err) -> str:
    """The one-line reason of a failed task: the BodyCaptureError it (or a task it waited for) raised,
    else Ray's last line."""
    cause = err
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:
        cause = cause.cause
    return str(cause) if isinstance(cause, BodyCaptureError) else _one_line(err)
