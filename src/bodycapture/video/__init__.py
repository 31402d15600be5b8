"""Video: frames streamed from clips (frames.py), people linked into tracks across frames (tracks.py),
tracks fitted window by window (sequence.py), the clip pipeline (capture.py), and a track's per-frame
parameters smoothed over time (smoothing.py). The fitting parts import torch when first used, so that
looking at a path (`is_video`) stays cheap."""

from .frames import Clip, Frame, is_video, open_clip
from .smoothing import smooth_track
from .tracks import Tracker, TrackerConfig, link_tracks

__all__ = ["Clip", "Frame", "open_clip", "is_video", "Tracker", "TrackerConfig", "link_tracks", "smooth_track",
           "SequenceConfig", "SequenceFitter", "TrackFit", "capture_clip", "ClipReport"]

_LAZY = {"SequenceConfig": "sequence", "SequenceFitter": "sequence", "TrackFit": "sequence",
         "capture_clip": "capture", "ClipReport": "capture"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
