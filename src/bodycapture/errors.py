"""Errors that the command line reports as one line (no traceback).

Every error the user can cause by what they pass in (a missing or corrupt file, a wrong option) is a
`BodyCaptureError`; its message names the file or option and the problem.
"""

from __future__ import annotations

from pathlib import Path


class BodyCaptureError(Exception):
    """Base class of user-facing errors; `str(err)` is a complete one-line message."""


class ModelFileError(BodyCaptureError, ValueError):
    """A body-model file that cannot be read, or whose contents are not a valid model."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ModelNotFoundError(BodyCaptureError, FileNotFoundError):
    """No model file where the caller (or the environment) pointed."""
