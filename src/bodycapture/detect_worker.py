"""The detection process of the capture pipeline (pipeline.py, `DetectionProcess`).

Started as `python -m bodycapture.detect_worker`: reads one job (pickled: paths or a clip, detector
settings, log level) from stdin, then writes one pickled (path, Prepared or BodyCaptureError, the wall-clock time
it was ready) per photo
(for a clip: (FrameInfo, ImageKeypoints) per frame, or ("error", BodyCaptureError)) to stdout, in order, and (None, None) at the end, or (None, traceback text) if something unexpected broke. A
separate interpreter (not multiprocessing) so that it never re-runs the caller's main script.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import time
import traceback
from pathlib import Path


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the result pipe
    try:
        job = pickle.load(sys.stdin.buffer)
        logging.basicConfig(level=job["log_level"], format="%(levelname)s %(name)s: %(message)s")
        from .keypoints.mediapipe import MediaPipeDetector
        from .pipeline import prepare_or_error

        with MediaPipeDetector(**job["detector"]) as detector:
            if job.get("clip") is not None:  # a clip: (FrameInfo, ImageKeypoints) per frame, or ("error", reason)
                from .video.capture import detected_frames

                for item in detected_frames(job["clip"], detector):
                    pickle.dump(item, out, protocol=pickle.HIGHEST_PROTOCOL)
                    out.flush()
            for path in job["paths"]:
                item = prepare_or_error(Path(path), None, detector, job["max_people"])
                pickle.dump((path, item, time.time()), out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
            pickle.dump((None, None), out)
            out.flush()
        # done: exit without unloading the interpreter (MediaPipe, OpenCV), whose teardown the parent would
        # wait for before it fits the last batch on every core
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)
    except (BrokenPipeError, EOFError):  # the parent stopped listening: nothing more to do
        return 0
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            pickle.dump((None, traceback.format_exc()), out)
            out.flush()
        except BrokenPipeError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
