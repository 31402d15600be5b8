"""bodycapture: expressive 3D humans (body, hands, face) from photos.

    import bodycapture
    report = bodycapture.capture("photos/", out="out")          # detect every person, fit, write results
    model = bodycapture.load_model()                             # the bundled open model (SMPL-X layout)
    result = bodycapture.fit(keypoints, model)                   # fit keypoints already in hand
    out = model(betas=betas, body_pose=body_pose)                # out.vertices (B, V, 3)

Names are imported on first use (PEP 562), so `import bodycapture` does not import torch or MediaPipe:
the command line starts detecting before torch has loaded.
"""

from .errors import BodyCaptureError, ModelFileError, ModelNotFoundError
from .lazy import lazy_names

# the one place the version is written (pyproject.toml reads it): importlib.metadata costs 40 ms at startup
__version__ = "0.1.0"

_LAZY = {
    "BodyModel": ".models", "BodyOutput": ".models", "load_model": ".models", "read_model_file": ".models",
    "fit": ".fitting", "FitConfig": ".fitting", "FitResult": ".fitting", "load_config": ".fitting",
    "capture": ".pipeline", "CaptureOptions": ".pipeline", "CaptureReport": ".pipeline",
    "detect_images": ".pipeline", "detect": ".keypoints.mediapipe", "MediaPipeDetector": ".keypoints.mediapipe",
    "ImageKeypoints": ".keypoints.types", "read_keypoints": ".keypoints.openpose",
}

__all__ = ["BodyCaptureError", "ModelFileError", "ModelNotFoundError", "__version__", *_LAZY]


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
