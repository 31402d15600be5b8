"""The capture pipeline for clips: a video file or a folder of numbered frames in -> every person detected
in every frame, linked into tracks, fitted window by window -> one result folder per clip, written
atomically. `pipeline.capture` calls `capture_clip` for the clips among its inputs.

How one clip goes:
1. A detection process (pipeline.DetectionProcess) decodes the frames and detects every person in each
   (`detected_frames`); only keypoints come back, so no frame is held in memory.
2. The people of each frame are linked into tracks (tracks.py); every `chunk` frames (two windows), the
   tracks seen in them are fitted (sequence.py: key frames as one batch, then window after window).
3. Tracks detected in fewer than `min_track_frames` frames are dropped (passers-by, false detections); the
   others are trimmed to the frames from their first to their last detection.
4. The result folder is staged and renamed into place (io/results.py `result_folder`): per track an
   AMASS-style npz, a skinned animated glTF binary and a BVH (io/animation.py), its per-frame parameters
   in camera space; overlay.mp4 (the frames decoded a second time, the fitted meshes drawn over them)
   and overlay.png (its first frame with people);
   report.html with the animation; clip.json, what happened.
A clip that cannot be read, has an unreadable frame, or has nobody in it is one line in the report, and
nothing is written for it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BodyCaptureError
from ..keypoints.layout import NUM_KEYPOINTS, fittable

__all__ = ["ClipFitting", "ClipReport", "FrameInfo", "capture_clip", "detected_frames", "finish_clip", "keep_tracks",
           "link", "track_arrays", "write_clip_results"]

log = logging.getLogger(__name__)

@dataclass
class FrameInfo:
    """A frame of a clip without its pixels: its number in the source, time (s), name and size (H, W)."""

    index: int
    time: float
    name: str
    size: tuple[int, int]


@dataclass
class ClipReport:
    """What happened to one clip. status: 'done', 'skipped' (a result exists), 'empty' (nobody tracked) or
    'failed'; message: the one-line reason when not done. tracks: per track kept, its id, first and last
    frame (numbers of the source clip), frames and frames detected, median residual in pixels.
    timings: seconds spent detecting (waiting for the detection process), fitting, writing."""

    input: Path
    name: str
    status: str = "pending"
    frames: int = 0
    fps: float = 0.0
    tracks: list[dict] = field(default_factory=list)
    folder: Path | None = None
    message: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def people_fitted(self) -> int:
        return len(self.tracks)


def detected_frames(clip_args: dict, detector) -> Iterator[tuple]:
    """(FrameInfo, ImageKeypoints of the people with enough body keypoints) per frame of the clip that
    `open_clip(**clip_args)` opens, in order; ("error", BodyCaptureError) and the end when the clip or a
    frame cannot be read. Runs in the detection process."""
    from .frames import open_clip

    try:
        clip = open_clip(**clip_args)
        yield "clip", {"count": clip.count, "fps": clip.fps, "size": clip.size}
        for frame in clip:
            kp = detector(frame.image)
            kp.source = frame.name
            usable = fittable(kp.points)
            if not usable.all():
                kp = kp.take(np.nonzero(usable)[0])
            yield FrameInfo(frame.index, frame.time, frame.name, tuple(frame.image.shape[:2])), kp
    except BodyCaptureError as err:
        yield "error", BodyCaptureError(str(err))
    except Exception as err:  # noqa: BLE001 - a decoder's or the detector's failure is this clip's
        yield "error", BodyCaptureError(f"{clip_args['source']}: could not be read or detected "
                                        f"({type(err).__name__}: {err})")


def _inline_frames(clip_args: dict, detector_factory) -> Iterator[tuple]:
    detector = detector_factory()
    try:
        yield from detected_frames(clip_args, detector)
    finally:
        if hasattr(detector, "close"):
            detector.close()


@dataclass
class _Track:
    """A track's fitted frames so far (clip frame numbers) and its fits, in order."""

    frames: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # among the clip's selected frames
    times: list[float] = field(default_factory=list)
    pieces: list = field(default_factory=list)  # TrackFit pieces
    keypoints: list[np.ndarray] = field(default_factory=list)  # (T, 135, 3) detections of each piece


def _fit_chunk(fitter, chunk: list[tuple[int, FrameInfo, object, np.ndarray]], tracks: dict[int, _Track]) -> None:
    """Fit the tracks seen in `chunk` [(position, frame, keypoints, track ids)]: their detections laid out
    per frame (zeros where a track was not seen), world landmarks where the detector gave them."""
    T = len(chunk)
    ids = sorted({int(t) for *_, tids in chunk for t in tids})
    if not ids:
        return
    points = {t: np.zeros((T, NUM_KEYPOINTS, 3)) for t in ids}
    world = {t: np.zeros((T, 25, 4)) for t in ids}
    has_world = False
    for i, (_, _, kp, tids) in enumerate(chunk):
        for p, t in enumerate(tids):
            points[int(t)][i] = kp.points[p]
            if kp.world is not None and len(kp.world) == kp.num_people:
                world[int(t)][i] = kp.world[p]
                has_world = True
    fits = fitter.fit(points, world if has_world else None)
    for t, f in fits.items():
        track = tracks.setdefault(t, _Track())
        rows = chunk[f.start : f.start + len(f.residual_px)]
        track.positions += [r[0] for r in rows]
        track.frames += [r[1].index for r in rows]
        track.times += [r[1].time for r in rows]
        track.pieces.append(f)
        track.keypoints.append(points[t][f.start:])


class ClipFitting:
    """Feeds a clip's frames, in order, to a SequenceFitter: every `2 window` frames the tracks seen in
    them are fitted (`_fit_chunk`), and tracks unseen for longer than the tracker's `max_gap` are ended.
    add(position, frame, keypoints, track ids) per frame, then finish() -> {track id: _Track}."""

    def __init__(self, fitter, max_gap: int):
        self.fitter, self.max_gap = fitter, max_gap
        self.chunk: list = []
        self.tracks: dict[int, _Track] = {}
        self.seen_last: dict[int, int] = {}
        self.seconds = 0.0

    def add(self, position: int, frame: FrameInfo, kp, ids: np.ndarray) -> None:
        for t in ids:
            self.seen_last[int(t)] = position
        self.chunk.append((position, frame, kp, ids))
        if len(self.chunk) == 2 * self.fitter.config.window:
            self._flush()
            for t in [t for t, last in self.seen_last.items() if position + 1 - last > self.max_gap + 1]:
                self.fitter.end_track(t)  # gone: its id is never given again
                self.seen_last.pop(t)

    def finish(self) -> dict[int, _Track]:
        self._flush()
        return self.tracks

    def _flush(self) -> None:
        tick = time.perf_counter()
        _fit_chunk(self.fitter, self.chunk, self.tracks)
        self.seconds += time.perf_counter() - tick
        self.chunk = []


def link(tracker, position: int, kp) -> np.ndarray:
    """(P,) the track ids of a frame's people (tracks.py), boxes from the detector or the keypoints."""
    if not kp.num_people:
        return np.zeros(0, dtype=np.int64)
    boxes = kp.boxes if kp.boxes is not None else np.stack([_box(p) for p in kp.points])
    return tracker.update(position, boxes, kp.points)


def track_arrays(tracks: dict[int, _Track]) -> dict[int, dict]:
    """Each track's fitted frames as arrays: {id: {"frames", "positions", "times", "params", "keypoints",
    "keypoints_2d", "residual_px", "detected"}} (every frame fitted, untrimmed)."""
    from .sequence import TrackFit

    out = {}
    for t, track in sorted(tracks.items()):
        fit = TrackFit.concatenate(track.pieces)
        out[t] = {"frames": np.asarray(track.frames), "positions": np.asarray(track.positions),
                  "times": np.asarray(track.times), "params": fit.params,
                  "keypoints": np.concatenate(track.keypoints), "keypoints_2d": fit.keypoints_2d,
                  "residual_px": fit.residual_px, "detected": fit.detected}
    return out


def keep_tracks(tracks: dict[int, dict], min_frames: int) -> dict[int, dict]:
    """The tracks (`track_arrays`) with at least `min_frames` detected frames, trimmed to their first..last
    detection."""
    out = {}
    for t, track in sorted(tracks.items()):
        detected = track["detected"]
        if detected.sum() < min_frames:
            log.info("track %d: detected in %d frames (< %d), dropped", t, int(detected.sum()), min_frames)
            continue
        seen = np.nonzero(detected)[0]
        keep = slice(int(seen[0]), int(seen[-1]) + 1)
        out[t] = {k: ({n: a[keep] for n, a in v.items()} if k == "params" else v[keep]) for k, v in track.items()}
    return out


def capture_clip(source: Path, name: str, model, config, options, detector_factory=None, bar_factory=None) -> ClipReport:
    """Detect, track and fit every person of one clip; write its result folder `options.out / name`.

    source: a video file or a folder of numbered frames. model: a BodyModel. config: a SequenceConfig
    (its `fit` the still-fit settings). options: pipeline.CaptureOptions (out, overwrite, people limits,
    the time window: start, end, fps, every; min_track_frames, overlay_video, report).
    detector_factory: makes the detector in this process (default: MediaPipe in a detection process).
    bar_factory(total, desc, unit): a progress bar. Returns a ClipReport; a clip's own problem (unreadable,
    nobody in it) is its report's status and message, not an exception."""
    from ..pipeline import DetectionProcess, skip_existing
    from .sequence import SequenceFitter
    from .tracks import Tracker

    start = time.perf_counter()
    report = ClipReport(source, name)
    if skip_existing(report, options):
        return report
    clip_args = options.clip_args(source)
    process = None
    if detector_factory is None:
        process = DetectionProcess([], options.detector_limits(), options.max_people, clip=clip_args)
        stream = iter(process)
    else:
        stream = _inline_frames(clip_args, detector_factory)
    timings = {"detect": 0.0, "fit": 0.0, "write": 0.0}
    bar = None
    try:
        tick = time.perf_counter()
        kind, info = next(stream)
        timings["detect"] += time.perf_counter() - tick
        if kind == "error":
            report.status, report.message = "failed", str(info)
            return report
        report.fps = float(info["fps"])
        size = tuple(int(s) for s in info["size"])
        fitter = SequenceFitter(model, config, size)
        tracker = Tracker()
        fitting = ClipFitting(fitter, tracker.config.max_gap)
        bar = bar_factory(info["count"], f"{name}: frames", "frame") if bar_factory else None
        position = 0
        while True:
            tick = time.perf_counter()
            item = next(stream, None)
            timings["detect"] += time.perf_counter() - tick
            if item is None or item[0] == "error":
                if item is not None:
                    report.status, report.message = "failed", str(item[1])
                    return report
                break
            frame, kp = item
            fitting.add(position, frame, kp, link(tracker, position, kp))
            position += 1
            report.frames += 1
            if bar is not None:
                bar.update(1)
        tracks = fitting.finish()
        timings["fit"] = fitting.seconds
    finally:
        if bar is not None:
            bar.close()
        if process is not None:
            process.close()
    return finish_clip(report, track_arrays(tracks), model, fitter.focal, size, options, clip_args, timings, start,
                       bar_factory)


def finish_clip(report: ClipReport, tracks: dict[int, dict], model, focal: float, size: tuple[int, int], options,
                clip_args: dict, timings: dict, start: float, bar_factory=None) -> ClipReport:
    """The end of a clip's capture (here and on Ray, engine/ray.py): keep the tracks seen long enough
    (`keep_tracks`), write the result folder and clip.json, complete the report. tracks: `track_arrays`."""
    source, target = report.input, options.out / report.name
    kept = keep_tracks(tracks, options.min_track_frames)
    if not kept:
        report.status = "empty"
        report.message = (f"{source}: no person found in {report.frames} frames" if not tracks else
                          f"{source}: nobody tracked for {options.min_track_frames} frames or more")
        return report
    tick = time.perf_counter()
    report.folder = write_clip_results(target, source, model, kept, focal, size, report.fps, options, clip_args,
                                       bar_factory)
    timings["write"] = time.perf_counter() - tick
    report.tracks = [{"id": t, "first_frame": int(k["frames"][0]), "last_frame": int(k["frames"][-1]),
                      "frames": int(len(k["frames"])), "detected": int(k["detected"].sum()),
                      "residual_px": round(float(np.nanmedian(k["residual_px"])), 2)} for t, k in kept.items()]
    report.status = "done"
    report.seconds = time.perf_counter() - start
    report.timings = timings
    _write_summary(report)
    return report


def _write_summary(report: ClipReport) -> None:
    """clip.json in the (published) result folder: the report as data."""
    from ..io.atomic import write_bytes_atomic

    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(report).items()}
    write_bytes_atomic(report.folder / "clip.json", (json.dumps(data, indent=1) + "\n").encode())


def write_clip_results(target: Path, source: Path, model, tracks: dict[int, dict], focal: float,
                       size: tuple[int, int], fps: float, options, clip_args: dict, bar_factory=None) -> Path:
    """Write a clip's result folder atomically (module doc, step 4). tracks: `keep_tracks`' output."""
    from ..io.animation import track_motion, write_amass_npz, write_bvh, write_gltf
    from ..io.results import result_folder

    center = (size[1] / 2, size[0] / 2)
    with result_folder(target, options.overwrite) as staging:
        for t, track in tracks.items():
            params = track["params"]
            motion = track_motion(model, params, fps)
            write_amass_npz(staging / f"track_{t}.npz", model, params, fps, gender=model.gender or "neutral",
                            motion=motion)
            write_gltf(staging / f"track_{t}.glb", model, params, fps, motion=motion)
            write_bvh(staging / f"track_{t}.bvh", model, params, fps, motion=motion)
            np.savez(staging / f"track_{t}_params.npz", **params, frame=track["frames"], time=track["times"],
                     detected=track["detected"], residual_px=track["residual_px"], keypoints=track["keypoints"],
                     keypoints_2d=track["keypoints_2d"], focal=np.array([focal, focal]), center=np.array(center),
                     image_size=np.array(size), fps=np.array(fps), source=np.array(str(source)))
        first_image = None
        if options.overlay_video:
            first_image = write_overlay_video(staging / "overlay.mp4", model, tracks, focal, size, fps, clip_args,
                                              bar_factory)
        if first_image is not None:  # the first frame with people, as the index's thumbnail
            from PIL import Image

            Image.fromarray(first_image).save(staging / "overlay.png")
        if options.report:
            from ..io.report import write_animation_report

            first = min(int(k["positions"][0]) for k in tracks.values())  # the timeline starts there
            order = list(tracks)
            write_animation_report(staging / "report.html", model, [tracks[t]["params"] for t in order], fps,
                                   (focal, focal), center, size,
                                   first_frames=[int(tracks[t]["positions"][0]) - first for t in order],
                                   image=first_image, info={"clip": str(source), "tracks": order})
    return target


def write_overlay_video(path: Path, model, tracks: dict[int, dict], focal: float, size: tuple[int, int], fps: float,
                        clip_args: dict, bar_factory=None) -> np.ndarray | None:
    """overlay.mp4: the clip's selected frames decoded again, every track's fitted mesh drawn over the
    frames where it was fitted (io/overlay.py), at the clip's rate. Meshes are posed a window at a time.
    Returns the first frame with its overlay (for the report), or None."""
    import cv2
    import torch

    from ..io.overlay import render_overlay
    from .frames import open_clip

    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise BodyCaptureError(f"{path}: OpenCV cannot write an mp4 video here")
    lookup = {t: {int(f): i for i, f in enumerate(k["frames"])} for t, k in tracks.items()}
    clip = open_clip(**clip_args)
    bar = bar_factory(clip.count, "overlay video", "frame") if bar_factory else None
    dtype, device = model.v_template.dtype, model.v_template.device
    first_image = None
    batch = 32
    cache: dict[tuple[int, int], np.ndarray] = {}  # (track, row) -> vertices, one batch of rows ahead

    def vertices(t: int, row: int) -> np.ndarray:
        key = (t, row)
        if key not in cache:
            stop = min(row + batch, len(tracks[t]["frames"]))
            given = {k: torch.as_tensor(v[row:stop], dtype=dtype, device=device) for k, v in tracks[t]["params"].items()}
            with torch.no_grad():
                verts = model(**given).vertices.cpu().numpy()
            for k in [k for k in cache if k[0] == t]:
                del cache[k]
            for i in range(stop - row):
                cache[(t, row + i)] = verts[i]
        return cache[key]

    try:
        for frame in clip:
            present = [(t, lookup[t][frame.index]) for t in tracks if frame.index in lookup[t]]
            image = frame.image
            if present:
                verts = np.stack([vertices(t, row) for t, row in present])
                image = render_overlay(image, verts, model.faces, np.array([focal, focal]),
                                       np.array([w / 2, h / 2]), (h, w))
                if first_image is None:
                    first_image = image
            writer.write(np.ascontiguousarray(image[..., ::-1]))
            if bar is not None:
                bar.update(1)
    finally:
        writer.release()
        if bar is not None:
            bar.close()
    return first_image


def _box(points: np.ndarray) -> np.ndarray:
    """(4,) the box of a person's detected keypoints (135, 3) (for detections without a detector box)."""
    seen = points[points[:, 2] > 0, :2]
    return np.concatenate([seen.min(0), seen.max(0)]) if len(seen) else np.zeros(4)
