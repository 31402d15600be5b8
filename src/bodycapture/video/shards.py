"""A clip fitted in shards: windows of the clip's frames that separate processes (Ray tasks, engine/ray.py)
detect and fit independently, and that are joined into tracks as if one process had fitted the clip.

    shards = plan_shards(count=900, length=320, window=32)           # [ClipShard(0, 0, 0, 320), ...]
    rows = detect_shard(clip_args, shards[k], detector_factory)      # per shard, anywhere
    link = link_shard(previous_link, rows)                           # in shard order: the tracker continued
    shapes = fit_shapes(rows, first_windows, ...)                    # per shard: tracks starting in it
    pieces = fit_shard(rows, shapes, ...)                            # per shard, with one window of overlap
    tracks = stitch(pieces, shards, project)                         # one process: the clip's tracks

What is exact and what is not:
- Detection is per frame, so a shard detects exactly what one process would; tracking runs once over the
  whole clip, in order (tracks.py): the track ids are those of a local run.
- Fitting carries state from window to window (sequence.py: the previous window's last frames start and
  constrain the next). A shard starts cold one window early (`overlap`, its burn-in: started from the key
  frames' still fits as a new track is) and the two fits of the overlapping frames are cross-faded
  (weight moving linearly from the earlier shard to the later one; rotations as weighted chordal means),
  so no seam shows. One shape per track: every track's shape is fitted in its first window alone (as the
  local run fits it there, free) before the shards, and given to every shard as fixed.
So a sharded fit is not bit-identical to a local run; how close it is, is measured (docs/many_machines.md,
"Clips on Ray": PA-MPJPE against ground truth on the synthetic clips, and the seam's acceleration).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BodyCaptureError
from .capture import ClipFitting, _inline_frames, link, track_arrays

__all__ = ["ClipShard", "ShardLink", "plan_shards", "detect_shard", "link_shard", "first_windows", "fit_shapes", "fit_shard",
           "stitch"]


@dataclass(frozen=True)
class ClipShard:
    """Shard `index` of a clip's selected frames (positions 0..count-1): it detects [start, end) and fits
    [begin, end); [begin, start) is its burn-in, fitted by the shard before it too."""

    index: int
    begin: int
    start: int
    end: int


def plan_shards(count: int, length: int, window: int, overlap: int | None = None) -> list[ClipShard]:
    """Shards of `length` frames (rounded up to whole windows, so that a shard's windows are the local
    run's) over `count` frames; `overlap` frames of burn-in (default: one window; whole windows)."""
    if count < 1 or length < 1 or window < 1:
        raise BodyCaptureError(f"a clip shard needs frames: count {count}, length {length}, window {window}")
    length = -(-length // window) * window
    overlap = window if overlap is None else -(-max(0, overlap) // window) * window
    overlap = min(overlap, length)
    return [ClipShard(i, max(0, s - overlap), s, min(s + length, count))
            for i, s in enumerate(range(0, count, length))]


def detect_shard(clip_args: dict, shard: ClipShard, detector_factory) -> list[tuple]:
    """Decode and detect the shard's own frames [start, end): [(position, FrameInfo, ImageKeypoints)] in
    order, position among the clip's selected frames (a clip yields its frames in order and can only stop
    early, so the k-th is at start + k). Raises BodyCaptureError when the clip or a frame cannot be read."""
    rows = []
    for item in _inline_frames({**clip_args, "positions": (shard.start, shard.end)}, detector_factory):
        if item[0] == "clip":
            continue
        if item[0] == "error":
            raise item[1]
        rows.append((shard.start + len(rows), *item))
    return rows


@dataclass
class ShardLink:
    """The tracker after a shard's frames; `ids` {position: track ids} of its frames with people, `new` the
    tracks that started in it, `frames` how many frames it had."""

    tracker: object
    ids: dict[int, np.ndarray] = field(default_factory=dict)
    new: list[int] = field(default_factory=list)
    frames: int = 0


def link_shard(previous: ShardLink | None, rows: list[tuple]) -> ShardLink:
    """The tracker (tracks.py) continued from the shard before (`previous`, None for the first) over this
    shard's `detect_shard` rows, in order: the track ids a local run gives."""
    from .tracks import Tracker

    tracker = previous.tracker if previous is not None else Tracker()
    issued = tracker.issued  # ids below it belong to tracks of earlier shards
    out = ShardLink(tracker, frames=len(rows))
    for position, _, kp in rows:
        found = link(tracker, position, kp)
        if len(found):
            out.ids[position] = found
    out.new = sorted({int(t) for v in out.ids.values() for t in v if t >= issued})
    return out


def first_windows(rows, window: int) -> dict[int, int]:
    """{track id: the position where its first window starts} (windows aligned to `window` from the clip's
    first frame: a track starts in the window of its first detection). rows: (position, frame, kp, ids)."""
    out: dict[int, int] = {}
    for position, _, _, ids in rows:
        for t in ids:
            out.setdefault(int(t), position - position % window)
    return out


def fit_shapes(rows: list[tuple], starts: dict[int, int], model, config, image_size, focal: float) -> dict[int, np.ndarray]:
    """Each track's shape, fitted in its first window with only the tracks starting in the same window (its
    shape free, as in a local run). rows: (position, FrameInfo, kp, ids) covering those windows; starts:
    {track id: window start} (`first_windows`) of the tracks to do. -> {track id: betas (S,)}."""
    from .sequence import SequenceFitter

    window = config.window
    out = {}
    for begin in sorted(set(starts.values())):
        wanted = {t for t, s in starts.items() if s == begin}
        fitter = SequenceFitter(model, config, image_size, focal_length=focal)
        fitting = ClipFitting(fitter, max_gap=window)
        for position, frame, kp, ids in rows:
            if begin <= position < begin + window:
                mine = np.array([int(t) in wanted for t in ids], dtype=bool)
                fitting.add(position, frame, kp.take(np.nonzero(mine)[0]), ids[mine])
        fitting.finish()
        out.update({t: fitter.shape(t) for t in wanted if t in fitter.tracks})
    return out


def fit_shard(rows: list[tuple], shapes: dict[int, np.ndarray], model, config, image_size, focal: float,
              max_gap: int) -> dict[int, dict]:
    """Fit a shard's frames [begin, end) (rows: (position, FrameInfo, kp, ids) in order) with a fresh
    SequenceFitter, every track's shape given (`fit_shapes`). -> `track_arrays` of its tracks."""
    from .sequence import SequenceFitter

    fitter = SequenceFitter(model, config, image_size, focal_length=focal)
    for t, betas in shapes.items():
        fitter.set_shape(t, betas)
    fitting = ClipFitting(fitter, max_gap)
    for row in rows:
        fitting.add(*row)
    return track_arrays(fitting.finish())


def stitch(pieces: list[dict[int, dict]], shards: list[ClipShard], project, hand_axis_angle: bool) -> dict[int, dict]:
    """The clip's tracks (`track_arrays`) from each shard's (`fit_shard`, in shard order): frames fitted
    by one shard taken as they are, the burn-in frames fitted by two cross-faded (module doc); their
    image keypoints recomputed by `project(params) -> (T, 135, 2)` and residuals from them.
    hand_axis_angle: the hand poses are axis-angle (else PCA coefficients, blended linearly)."""
    from .sequence import _residuals
    from .smoothing import ROTATION_PARAMS, blend_rotations

    rotations = set(ROTATION_PARAMS) | ({"left_hand_pose", "right_hand_pose"} if hand_axis_angle else set())
    out = {}
    for t in sorted({t for piece in pieces for t in piece}):
        track = None
        for shard, piece in zip(shards, pieces):
            if t not in piece:
                continue
            new = piece[t]
            if track is None:
                track = {k: (dict(v) if k == "params" else v) for k, v in new.items()}
                continue
            old_pos, new_pos = track["positions"], new["positions"]
            both = np.intersect1d(old_pos, new_pos)
            # the later shard's weight: 0 before its burn-in, rising over it, 1 from its own frames on
            w = np.clip((both - shard.begin + 1) / (shard.start - shard.begin + 1), 0.0, 1.0)
            i_old, i_new = np.searchsorted(old_pos, both), np.searchsorted(new_pos, both)
            keep_old = old_pos < (new_pos[0] if not len(both) else both[0])
            after = new_pos > (old_pos[-1] if len(old_pos) else -1)
            blended = {}
            for name, a in track["params"].items():
                x, y = a[i_old], new["params"][name][i_new]
                if name == "betas":  # the track's one shape, given to both shards
                    blended[name] = y
                elif name in rotations:
                    blended[name] = blend_rotations(x, y, w)
                else:
                    blended[name] = (1 - w[:, None]) * x + w[:, None] * y
            kp2d = project(blended) if len(both) else new["keypoints_2d"][:0]
            resid = _residuals(kp2d, new["keypoints"][i_new]) if len(both) else new["residual_px"][:0]
            joined = {}
            for k in ("positions", "frames", "times", "keypoints", "detected"):
                joined[k] = np.concatenate([track[k][keep_old], new[k][i_new], new[k][after]])
            joined["keypoints_2d"] = np.concatenate([track["keypoints_2d"][keep_old], kp2d, new["keypoints_2d"][after]])
            joined["residual_px"] = np.concatenate([track["residual_px"][keep_old], resid, new["residual_px"][after]])
            joined["params"] = {k: np.concatenate([v[keep_old], blended[k], new["params"][k][after]])
                                for k, v in track["params"].items()}
            if np.any(np.diff(joined["positions"]) <= 0):
                raise RuntimeError(f"track {t}: shard pieces do not follow each other")  # a bug, not the input's
            track = joined
        out[t] = track
    return out
