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
    the user set no value; returns whether it did. float32 fits depend on the summation order of the model's
    float64 set-up products, which depends on how many threads OpenBLAS started with (measured: shape
    coefficients 0.12 apart on one photo). Ray starts its workers with OMP_NUM_THREADS=1, so a plain run and
    an --engine ray run give the same numbers only if both start so; the `bodycapture` command calls this
    first thing (a Python user can, before importing numpy). torch's threads are still set per run; the
    detection process is started without the pin (pipeline.DetectionProcess drops it, seeing PINNED)."""
    if "numpy" in sys.modules or "OMP_NUM_THREADS" in os.environ:
        return False
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ[PINNED] = "1"
    return True
