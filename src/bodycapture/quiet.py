"""Native libraries: MediaPipe's C++ and FFmpeg inside OpenCV print to file descriptor 2 directly, past
Python's logging (their chatter is hidden unless debugging output (-vv) is on, so that a problem is one
line of ours, not theirs); OpenBLAS and OpenMP fix their thread count when they load (`pin_native_threads`)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["native_stderr_silenced", "pin_native_threads", "PINNED"]

PINNED = "BODYCAPTURE_PINNED_OMP"  # set beside OMP_NUM_THREADS=1 when pin_native_threads set it


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Within the block, whatever native code writes to file descriptor 2 goes nowhere (unless the
    `bodycapture` logger is at DEBUG)."""
    if logging.getLogger("bodycapture").isEnabledFor(logging.DEBUG):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def pin_native_threads() -> bool:
    """Start numpy's OpenBLAS and OpenMP with one thread (OMP_NUM_THREADS=1), if numpy is not loaded yet and
    the user set no value; returns whether it did. The `bodycapture` command calls this first thing, as Ray
    starts its workers, so that native libraries do not start a thread per core beside the fitting
    processes (`pipeline.choose_threads` sets torch's threads per run). The numbers no longer depend on it:
    the model's set-up products, whose rounding followed OpenBLAS's thread count (a shape coefficient 0.12
    apart on one photo; coco_564's spectator fitted into another minimum), are summed by numpy's own loops
    since 2026-12-02 (`models.body_model.regress`, tested). The detection process is started without the pin
    (pipeline.DetectionProcess drops it, seeing PINNED): MediaPipe's threads are its own."""
    if "numpy" in sys.modules or "OMP_NUM_THREADS" in os.environ:
        return False
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ[PINNED] = "1"
    return True
