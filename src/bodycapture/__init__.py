"""bodycapture: expressive 3D humans (body, hands, face) from a single image.

Public API so far: the body-model layer.

    import bodycapture
    model = bodycapture.load_model("path/to/models", gender="neutral")   # official SMPL-X files
    out = model(betas=betas, body_pose=body_pose)                         # out.vertices (B, V, 3)
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import BodyCaptureError, ModelFileError, ModelNotFoundError
from .models import BodyModel, BodyOutput, load_model, read_model_file

try:
    __version__ = version("bodycapture")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "BodyCaptureError",
    "ModelFileError",
    "ModelNotFoundError",
    "BodyModel",
    "BodyOutput",
    "load_model",
    "read_model_file",
    "__version__",
]
