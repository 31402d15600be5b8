"""Reading BVH motion capture files and computing world rotations (forward kinematics), vectorised over frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BodyCaptureError

__all__ = ["BVH", "read_bvh", "euler_to_matrix"]


@dataclass
class BVH:
    """names (J,), parents (J,) with -1 at the root, offsets (J, 3) rest offsets from the parent,
    channels: per joint the list of channel names; motion (F, C) in file order; frame_time in seconds."""

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[list[str]]
    motion: np.ndarray
    frame_time: float

    def rotations(self) -> np.ndarray:
        """(F, J, 3, 3) local rotation matrices from the Euler channels (intrinsic, in channel order)."""
        frames = len(self.motion)
        out = np.tile(np.eye(3), (frames, len(self.names), 1, 1))
        col = 0
        for j, chans in enumerate(self.channels):
            rot_axes = [c[0].lower() for c in chans if c.endswith("rotation")]
            rot_cols = [col + i for i, c in enumerate(chans) if c.endswith("rotation")]
            if rot_axes:
                out[:, j] = euler_to_matrix(np.deg2rad(self.motion[:, rot_cols]), "".join(rot_axes))
            col += len(chans)
        return out

    def world_rotations(self) -> np.ndarray:
        """(F, J, 3, 3) rotations of every joint in the world frame."""
        local = self.rotations()
        world = np.empty_like(local)
        for j, p in enumerate(self.parents):  # parents come first in a BVH file
            world[:, j] = local[:, j] if p < 0 else world[:, p] @ local[:, j]
        return world

    def positions(self) -> np.ndarray:
        """(F, J, 3) world joint positions (root translation from its position channels)."""
        world = self.world_rotations()
        pos = np.zeros((len(self.motion), len(self.names), 3))
        root_cols = [i for i, c in enumerate(self.channels[0]) if c.endswith("position")]
        for j, p in enumerate(self.parents):
            if p < 0:
                pos[:, j] = self.motion[:, root_cols] if root_cols else self.offsets[j]
            else:
                pos[:, j] = pos[:, p] + world[:, p] @ self.offsets[j]
        return pos


def euler_to_matrix(angles: np.ndarray, axes: str) -> np.ndarray:
    """Intrinsic rotations in the order given: 'zyx' -> Rz(a0) Ry(a1) Rx(a2). angles (..., 3) radians."""
    out = np.broadcast_to(np.eye(3), angles.shape[:-1] + (3, 3)).copy()
    for k, axis in enumerate(axes):
        c, s = np.cos(angles[..., k]), np.sin(angles[..., k])
        r = np.zeros(angles.shape[:-1] + (3, 3))
        i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
        m = "xyz".index(axis)
        r[..., m, m] = 1
        r[..., i, i], r[..., i, j], r[..., j, i], r[..., j, j] = c, -s, s, c
        out = out @ r
    return out


def read_bvh(path: str | Path) -> BVH:
    path = Path(path)
    try:
        tokens = path.read_text().split()
    except (OSError, UnicodeDecodeError) as err:
        raise BodyCaptureError(f"{path}: cannot read ({err})") from None
    names, parents, offsets, channels, stack = [], [], [], [], []
    i, last = 0, -1
    try:
        while tokens[i] != "MOTION":
            t = tokens[i]
            if t in ("ROOT", "JOINT"):
                names.append(tokens[i + 1])
                parents.append(stack[-1] if stack else -1)
                last = len(names) - 1
                i += 2
            elif t == "End":
                last = None  # the end site's block: offsets and braces only
                i += 2
            elif t == "{":
                stack.append(last if last is not None else -2)
                i += 1
            elif t == "}":
                stack.pop()
                i += 1
            elif t == "OFFSET":
                if last is not None:
                    offsets.append([float(x) for x in tokens[i + 1 : i + 4]])
                i += 4
            elif t == "CHANNELS":
                n = int(tokens[i + 1])
                channels.append(tokens[i + 2 : i + 2 + n])
                i += 2 + n
            else:
                i += 1
        frames = int(tokens[i + 2])
        frame_time = float(tokens[i + 5])
        values = np.array(tokens[i + 6 :], dtype=np.float64)
    except (IndexError, ValueError) as err:
        raise BodyCaptureError(f"{path}: not a valid BVH file ({err})") from None
    n_channels = sum(len(c) for c in channels)
    if values.size != frames * n_channels:
        raise BodyCaptureError(f"{path}: {values.size} motion values, expected {frames} x {n_channels}")
    parents = [p if p is not None and p >= 0 else -1 for p in parents]
    return BVH(names, np.array(parents), np.array(offsets), channels, values.reshape(frames, n_channels), frame_time)
