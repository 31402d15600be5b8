"""Video: frames streamed from clips (frames.py), people linked into tracks across frames (tracks.py), and a
track's per-frame parameters smoothed over time (smoothing.py)."""

from .frames import Clip, Frame, is_video, open_clip
from .smoothing import smooth_track
from .tracks import Tracker, TrackerConfig, link_tracks

__all__ = ["Clip", "Frame", "open_clip", "is_video", "Tracker", "TrackerConfig", "link_tracks", "smooth_track"]
