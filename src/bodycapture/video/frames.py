"""Frames of a clip, streamed: a video file (decoded with OpenCV, which the detector already brings) or a
folder of numbered frames, with a time window (`start`, `end`), a frame rate to resample to (`fps`) and a
stride (`every`). Frames are read one at a time and never all held in memory.

    clip = open_clip("dance.mp4", start=2.0, end=5.0, fps=10)
    for frame in clip:            # Frame(index in the clip, time in seconds, (H, W, 3) uint8 RGB)
        ...

Errors are one line naming the file: a clip that cannot be opened or has no frame, a frame of a folder
that cannot be read. A video whose decoding stops before its announced length ends there with a warning.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BodyCaptureError
from ..quiet import native_stderr_silenced

__all__ = ["Frame", "Clip", "open_clip", "is_video", "VIDEO_SUFFIXES", "FRAME_SUFFIXES"]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FOLDER_FPS = 30.0  # a folder of frames has no rate of its own: this unless `source_fps` is given


@dataclass
class Frame:
    """One frame: `index` of the frame in the source clip, `time` in seconds from the clip's start, `image`
    (H, W, 3) uint8 RGB, `name` where it came from (a frame file, or the video and frame number)."""

    index: int
    time: float
    image: np.ndarray
    name: str


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _numbered_frames(folder: Path) -> list[Path]:
    """The frame files of a folder in the order of the last number in their names (frame_2 before frame_10)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]

    def key(p: Path):
        numbers = re.findall(r"\d+", p.stem)
        return (int(numbers[-1]) if numbers else -1, p.name)

    return sorted(files, key=key)


def select_frames(count: int, source_fps: float, start: float = 0.0, end: float | None = None,
                  fps: float | None = None, every: int = 1) -> list[int]:
    """Indices of the source frames to use, in order: those in [start, end) seconds; with `fps`, for each
    tick k / fps the nearest frame (a frame at most once; never more frames than the source has); then
    every `every`-th. `count` may be an estimate (a video's announced length)."""
    first = max(0, math.ceil(start * source_fps - 1e-9))
    last = count if end is None else min(count, math.ceil(end * source_fps - 1e-9))
    if last <= first:
        return []
    if fps is None or fps >= source_fps:
        chosen = list(range(first, last))
    else:
        ticks = np.arange(start, (last / source_fps) - 1e-9, 1.0 / fps)
        chosen = sorted(set(int(i) for i in np.clip(np.round(ticks * source_fps), first, last - 1)))
    return chosen[:: max(1, every)]


class Clip:
    """A video file or a folder of numbered frames; iterate it for the selected frames (see `open_clip`).

    fps: the rate of the frames it yields (the source's, or `fps` when it resamples, divided by `every`);
    size: (height, width); count: how many frames it will yield (from the announced length for a video).
    """

    def __init__(self, source: str | Path, start: float = 0.0, end: float | None = None, fps: float | None = None,
                 every: int = 1, source_fps: float | None = None, positions: tuple[int, int] | None = None):
        self.source = Path(source)
        if every < 1:
            raise BodyCaptureError(f"every must be at least 1, got {every}")
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise BodyCaptureError(f"fps must be a positive number, got {fps}")
        if not (start >= 0 and math.isfinite(start)) or (end is not None and not end > start):
            raise BodyCaptureError(f"{self.source}: the time window {start}..{end} s is empty or invalid")
        if self.source.is_dir():
            self._files = _numbered_frames(self.source)
            if not self._files:
                raise BodyCaptureError(f"{self.source}: no frame images in this folder ({', '.join(FRAME_SUFFIXES)})")
            self.source_fps = float(source_fps or FOLDER_FPS)
            total = len(self._files)
            first = self._read_file(self._files[0])
        elif self.source.is_file():
            self._files = None
            total, self.source_fps, first = self._probe_video(source_fps)
        else:
            raise BodyCaptureError(f"{self.source}: no such video file or frame folder")
        self.size = tuple(first.shape[:2])
        self.frames = select_frames(total, self.source_fps, start, end, fps, every)
        if not self.frames:
            raise BodyCaptureError(f"{self.source}: no frame between {start} and {end} s "
                                   f"({total} frames at {self.source_fps:g} fps)")
        if positions is not None:  # a shard of the clip: its selected frames [a, b) only
            a, b = int(positions[0]), int(positions[1])
            if not 0 <= a < b <= len(self.frames):
                raise BodyCaptureError(f"{self.source}: frames {a}..{b} are outside the clip's {len(self.frames)}")
            self.frames = self.frames[a:b]
        self.fps = (min(fps, self.source_fps) if fps else self.source_fps) / every

    @property
    def count(self) -> int:
        return len(self.frames)

    def _probe_video(self, source_fps: float | None) -> tuple[int, float, np.ndarray]:
        import cv2

        with native_stderr_silenced():  # FFmpeg's own complaints; ours is the one line below
            cap = cv2.VideoCapture(str(self.source))
        try:
            with native_stderr_silenced():
                ok, image = cap.read() if cap.isOpened() else (False, None)
            if not ok or image is None:
                raise BodyCaptureError(f"{self.source}: not a readable video (OpenCV could not decode a frame)")
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            rate = float(source_fps or cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
        if not (rate > 0 and math.isfinite(rate)):
            raise BodyCaptureError(f"{self.source}: the video gives no frame rate; pass --source-fps")
        return max(total, 1), rate, image[..., ::-1]

    def _read_file(self, path: Path) -> np.ndarray:
        from ..io.images import read_image

        try:
            return read_image(path)
        except BodyCaptureError as err:
            raise BodyCaptureError(f"{err} (a frame of {self.source})") from None

    def __iter__(self) -> Iterator[Frame]:
        if self._files is not None:
            for i in self.frames:
                yield Frame(i, i / self.source_fps, self._read_file(self._files[i]), self._files[i].name)
            return
        yield from self._iter_video()

    def _iter_video(self) -> Iterator[Frame]:
        import cv2

        with native_stderr_silenced():
            cap = cv2.VideoCapture(str(self.source))
        wanted = iter(self.frames)
        target = next(wanted, None)
        index = 0
        try:
            if self.frames[0] > 0:  # seek to the window's start; decode forward from there
                cap.set(cv2.CAP_PROP_POS_FRAMES, self.frames[0])
                index = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
                if index > self.frames[0]:  # the backend overshot: start again from the beginning
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    index = 0
            while target is not None:
                if index < target:
                    if not cap.grab():
                        break
                    index += 1
                    continue
                with native_stderr_silenced():
                    ok, image = cap.read()
                if not ok or image is None:
                    break
                yield Frame(index, index / self.source_fps, np.ascontiguousarray(image[..., ::-1]),
                            f"{self.source.name}#{index}")
                index += 1
                target = next(wanted, None)
        finally:
            cap.release()
        if target is not None:
            log.warning("%s: decoding stopped at frame %d (the video announced %d frames)", self.source, index,
                        self.frames[-1] + 1)


def open_clip(source: str | Path, start: float = 0.0, end: float | None = None, fps: float | None = None,
              every: int = 1, source_fps: float | None = None, positions: tuple[int, int] | None = None) -> Clip:
    """A clip to stream: a video file or a folder of numbered frames. start, end: seconds (end excluded);
    fps: resample to this rate (nearest frames; never above the source's); every: then keep every N-th;
    source_fps: the rate of a frame folder (default 30) or to override a video's; positions (a, b): only the
    a-th to (b-1)-th of the frames selected so (a shard of the clip; the rate stays the clip's). Raises BodyCaptureError
    with a one-line reason when the clip cannot be read or the window holds no frame."""
    return Clip(source, start, end, fps, every, source_fps, positions)
