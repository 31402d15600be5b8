"""Video: frames streamed from clips (frames.py) and people linked into tracks across frames (tracks.py)."""

from .frames import Clip, Frame, is_video, open_clip
from .tracks import Tracker, TrackerConfig, link_tracks

__all__ = ["Clip", "Frame", "open_clip", "is_video", "Tracker", "TrackerConfig", "link_tracks"]
