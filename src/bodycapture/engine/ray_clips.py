"""Clips on a Ray cluster: a video (or a folder of frames) cut into shards of frames that Ray tasks detect
and fit, joined into the clip's tracks by the process that started the run (video/shards.py says what is
exact and what is not).

How one clip goes (each step's tasks run at once, as many as the cluster allows):
1. detect: one task per shard decodes and detects its own frames and writes them to the job folder
   (`OUT/.bodycapture-ray/clips/NAME-DIGEST/detect-K.pkl`);
2. the driver links the people of every frame into tracks, in order (the local run's tracker and ids);
3. shapes: per shard, the first window of every track starting in it, fitted alone -> each track's shape;
4. fit: one task per shard fits its frames and one window before them, every shape given;
5. the driver cross-fades the shards' overlaps into tracks and writes the result folder as a local run
   does (video/capture.py `finish_clip`: animation files, overlay video, report).
Every task's result is a file written atomically in the job folder; a re-run of an interrupted job (the
digest covers the clip, its time window, the shard plan and the fit settings) skips the tasks whose files
exist, and the manifest records each clip's steps. The job folder is removed once the result is written.
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
from .ray import MANIFEST, _cached_model, _read_manifest, _write_manifest, inline_detector, remote_task, run_tasks, \
    task_limit

__all__ = ["capture_clip_ray", "run_clip_detect", "run_clip_shapes", "run_clip_fit"]

log = logging.getLogger(__name__)


def _save(path: Path, obj) -> None:
    from ..io.atomic import write_bytes_atomic

    write_bytes_atomic(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _load(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)


# ---------------------------------------------------------------------------------------------- tasks
def run_clip_detect(clip_args: dict, shard, options, path: str, detector_factory=None) -> dict:
    """Task: detect a shard's own frames; write [(position, FrameInfo, kp)] to `path`. -> {"frames",
    "people"} or {"error": one line} when the clip or a frame cannot be read."""
    from ..video.frames import open_clip
    from ..video.shards import detect_shard

    try:
        positions = {index: i for i, index in enumerate(open_clip(**clip_args).frames)}
        frames = detect_shard(clip_args, shard, detector_factory or inline_detector(options))
    except BodyCaptureError as err:
        return {"error": str(err)}
    rows = [(positions[frame.index], frame, kp) for frame, kp in frames]
    _save(Path(path), rows)
    return {"frames": len(rows), "people": int(sum(kp.num_people for _, _, kp in rows))}


def _rows(job: Path, shards: list, a: int, b: int, ids: dict[int, np.ndarray]) -> list[tuple]:
    """(position, FrameInfo, kp, track ids) of the frames [a, b), from the detect files of the shards that
    hold them."""
    rows = []
    for shard in shards:
        if shard.end <= a or shard.start >= b:
            continue
        for position, frame, kp in _load(job / f"detect-{shard.index}.pkl"):
            if a <= position < b:
                rows.append((position, frame, kp, ids.get(position, np.zeros(0, dtype=np.int64))))
    return sorted(rows, key=lambda r: r[0])


def _task_model(model_args: dict, config, options):
    """The worker's model (cached across its tasks), the still fit's config, torch threads set."""
    from ..pipeline import _model_and_config, sequence_config

    model, config = _model_and_config(lambda: _cached_model(**model_args), config, options, concurrent_detection=False)
    return model, sequence_config(options, config)


def run_clip_shapes(job: str, shards: list, shard, ids: dict, starts: dict[int, int], model_args: dict, config, options,
                    size, focal: float, path: str) -> int:
    """Task: the shapes of the tracks starting in `shard` (`starts`: {track: window start}) -> `path`."""
    from ..video.shards import fit_shapes

    model, sequence = _task_model(model_args, config, options)
    a, b = min(starts.values()), max(starts.values()) + sequence.window
    shapes = fit_shapes(_rows(Path(job), shards, a, b, ids), starts, model, sequence, size, focal)
    _save(Path(path), shapes)
    return len(shapes)


def run_clip_fit(job: str, shards: list, shard, ids: dict, shapes: dict, model_args: dict, config, options, size,
                 focal: float, max_gap: int, path: str) -> int:
    """Task: fit the shard's frames [begin, end), every track's shape given -> `path` (track arrays)."""
    from ..video.shards import fit_shard

    model, sequence = _task_model(model_args, config, options)
    rows = _rows(Path(job), shards, shard.begin, shard.end, ids)
    tracks = fit_shard(rows, shapes, model, sequence, size, focal, max_gap)
    _save(Path(path), tracks)
    return len(rows)


# --------------------------------------------------------------------------------------------- driver
def _job_folder(out: Path, name: str, clip_args: dict, plan: list, sequence, model_args: dict, options) -> Path:
    """The job's folder of intermediate files; its name's digest changes with anything that changes them."""
    limits = [options.max_people, options.min_height, options.thorough]
    key = json.dumps([str(Path(clip_args["source"]).resolve()), clip_args, [dataclasses.astuple(s) for s in plan],
                      repr(sequence), model_args, limits], sort_keys=True, default=str)
    return out / MANIFEST.parent / "clips" / f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def capture_clip_ray(source: Path, name: str, model_args: dict, config, options, task_options, ray_options,
                     started, detector_factory=None):
    """One clip over Ray (module doc). options: the run's CaptureOptions; task_options: the tasks' (threads,
    device); started() starts Ray and returns the module. Returns a ClipReport; its timings give the
    seconds of each step and the shards (run and failed)."""
    from ..fitting.camera import default_focal
    from ..pipeline import _model_and_config, _progress, load_fit_model, sequence_config, skip_existing
    from ..video.capture import ClipReport, finish_clip
    from ..video.frames import open_clip
    from ..video.sequence import SequenceFitter
    from ..video.shards import first_windows, link_shards, plan_shards, stitch
    from ..video.tracks import TrackerConfig

    start = time.perf_counter()
    report = ClipReport(source, name)
    if skip_existing(report, options):
        return report
    clip_args = {"source": str(source), "start": options.start, "end": options.end, "fps": options.fps,
                 "every": options.every, "source_fps": options.source_fps}
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
    timings = {"detect": 0.0, "track": 0.0, "shapes": 0.0, "fit": 0.0, "write": 0.0, "shards": float(len(plan)),
               "shards_failed": 0.0}
    ray_mod = None
    bar = _progress(options, 2 * clip.count, f"{name}: detect + fit", "frame")

    def step(kind: str, remote_fn, calls: list[tuple], frames: dict) -> str | None:
        """Run a step's tasks whose files are missing; -> None, or the first failure's one line."""
        nonlocal ray_mod
        tick = time.perf_counter()
        todo = [(k, args) for k, args in calls if not (job / f"{kind}-{k}.pkl").exists()]
        keys = {k for k, _ in todo}
        bar.update(sum(frames.get(k, 0) for k, _ in calls if k not in keys))  # done by an earlier run
        problem = None
        if todo:
            ray_mod = ray_mod or started()
            remote = remote_task(ray_mod, remote_fn, ray_options)
            for key, result, reason in run_tasks(ray_mod, remote, todo, task_limit(ray_mod, ray_options)):
                if reason is None and isinstance(result, dict) and "error" in result:
                    reason = result["error"]  # the clip's own problem (an unreadable frame): not a retry
                if reason is not None:
                    timings["shards_failed"] += 1
                    problem = problem or reason
                bar.update(frames.get(key, 0))
        timings[kind] += time.perf_counter() - tick
        record[kind] = "failed" if problem else "done"
        _write_manifest(options.out, manifest)
        return problem

    try:
        # 1. detection
        calls = [(s.index, (clip_args, s, task_options, str(job / f"detect-{s.index}.pkl"), detector_factory))
                 for s in plan]
        problem = step("detect", run_clip_detect, calls, {s.index: s.end - s.start for s in plan})
        if problem:
            return _failed(report, options, manifest, record, problem, timings, start)
        # 2. tracks, in order over the whole clip
        tick = time.perf_counter()
        positions = {index: i for i, index in enumerate(clip.frames)}
        detections = ([(frame, kp) for _, frame, kp in _load(job / f"detect-{s.index}.pkl")] for s in plan)
        ids, rows_seen = {}, []
        for position, frame, kp, track_ids in link_shards(detections, positions):
            report.frames += 1
            if len(track_ids):
                ids[position] = track_ids
                rows_seen.append((position, None, None, track_ids))
        timings["track"] = time.perf_counter() - tick
        if not ids:
            bar.update(clip.count)
            record["status"] = "empty"
            _write_manifest(options.out, manifest)
            return finish_clip(report, {}, model, focal, size, options, clip_args, timings, start)
        # 3. shapes of the tracks starting in each shard
        starts = first_windows(rows_seen, sequence.window)
        by_shard = {s.index: {t: w for t, w in starts.items() if s.start <= w < s.end} for s in plan}
        common = (model_args, config, task_options, size, focal)
        calls = [(s.index, (str(job), plan, s, _ids_in(ids, min(by_shard[s.index].values()),
                                                        max(by_shard[s.index].values()) + sequence.window),
                            by_shard[s.index], *common, str(job / f"shapes-{s.index}.pkl")))
                 for s in plan if by_shard[s.index]]
        problem = step("shapes", run_clip_shapes, calls, {})
        if problem:
            return _failed(report, options, manifest, record, problem, timings, start)
        shapes = {}
        for k, _ in calls:
            shapes.update(_load(job / f"shapes-{k}.pkl"))
        # 4. every shard's frames, with one window of burn-in
        max_gap = TrackerConfig().max_gap
        calls = []
        for s in plan:
            present = _ids_in(ids, s.begin, s.end)
            if present:
                tracks = {int(t) for v in present.values() for t in v}
                calls.append((s.index, (str(job), plan, s, present, {t: shapes[t] for t in tracks if t in shapes},
                                        *common, max_gap, str(job / f"fit-{s.index}.pkl"))))
        problem = step("fit", run_clip_fit, calls, {s.index: s.end - s.start for s in plan})
        if problem:
            return _failed(report, options, manifest, record, problem, timings, start)
        bar.update(sum(s.end - s.start for s in plan if s.index not in {k for k, _ in calls}))
        # 5. joined and written as a local run writes them
        fitted = {k for k, _ in calls}
        pieces = [_load(job / f"fit-{s.index}.pkl") if s.index in fitted else {} for s in plan]
        projector = SequenceFitter(model, sequence, size, focal_length=focal)
        hand_axis_angle = model.parameter_sizes().get("left_hand_pose", 0) == 45
        tracks = stitch(pieces, plan, projector.project, hand_axis_angle)
    finally:
        bar.close()
    report = finish_clip(report, tracks, model, focal, size, options, clip_args, timings, start)
    record["status"] = report.status
    _write_manifest(options.out, manifest)
    if report.status in ("done", "empty"):
        shutil.rmtree(job, ignore_errors=True)
    return report


def _ids_in(ids: dict[int, np.ndarray], a: int, b: int) -> dict[int, np.ndarray]:
    """The frames [a, b) with people: {position: track ids}."""
    return {p: v for p, v in ids.items() if a <= p < b}


def _failed(report, options, manifest: dict, record: dict, reason: str, timings: dict, start: float):
    """A clip that a step could not finish: one line, nothing written but the job's files (a re-run
    continues from them)."""
    report.status, report.message = "failed", f"{report.input}: {reason}" if str(report.input) not in reason else reason
    report.timings, report.seconds = timings, time.perf_counter() - start
    record["status"], record["error"] = "failed", reason
    _write_manifest(options.out, manifest)
    return report
