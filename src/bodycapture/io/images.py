"""Image files as arrays: any photo Pillow reads as (H, W, 3) uint8 RGB, and scaled down to fit a size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..keypoints.types import KeypointFileError

__all__ = ["IMAGE_SUFFIXES", "read_image", "scaled_to_fit", "fitted_size"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, with its EXIF orientation applied. Single-channel images of more
    than 8 bits (16-bit PNG or TIFF, 32-bit integer or float TIFF) are scaled to 8 bits (Pillow's own conversion
    clips them: a 16-bit photo came out white)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise KeypointFileError(path, "no such image file")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I", "F") or img.mode.startswith("I;16"):
                return _grey_to_8_bits(np.asarray(img))
            return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as err:
        raise KeypointFileError(path, f"refused: {err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError) as err:
        raise KeypointFileError(path, f"not a readable image ({type(err).__name__}: {err})") from None


def _grey_to_8_bits(grey: np.ndarray) -> np.ndarray:
    """(H, W) single-channel values of more than 8 bits -> (H, W, 3) uint8. Floats: [0, 1] when none exceeds 1,
    else [0, 255]; integers: 16-bit (0..65535) when any exceeds 255, else 8-bit."""
    values = np.nan_to_num(grey.astype(np.float64), nan=0.0)
    top = values.max(initial=0.0)
    if np.issubdtype(grey.dtype, np.floating):
        values = values * 255.0 if top <= 1.0 else values
    elif top > 255:
        values = values / 257.0  # 65535 -> 255
    return np.repeat(np.clip(np.rint(values), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def scaled_to_fit(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the same, scaled down (Lanczos) so that its longer side is `max_side` pixels; an image
    that fits is returned as it is. A large image is first shrunk by a whole factor (reducing_gap): faster, the same
    to the eye."""
    from PIL import Image

    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    fh, fw = fitted_size(h, w, max_side)
    return np.asarray(Image.fromarray(np.asarray(image, dtype=np.uint8)[..., :3]).resize((fw, fh), Image.LANCZOS,
                                                                                          reducing_gap=3.0))


def fitted_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) scaled down so that the longer side is `max_side` (unchanged when it fits)."""
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))
