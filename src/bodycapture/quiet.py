"""Native libraries (MediaPipe's C++, FFmpeg inside OpenCV) that print to file descriptor 2 directly, past
Python's logging: their chatter is hidden unless debugging output (-vv) is on, so that a problem is one
line of ours, not theirs."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["native_stderr_silenced"]


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
