"""Decode one image file into the model's input: uint8 HxWxC, raw 0-255 pixels. No TensorFlow.

Training, verify and the embeddable runtime all call `load_image`, so an image is decoded and
resized the same way everywhere.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import EdgeclsError

#: Formats accepted in an image folder (Pillow decodes them; the extension is not trusted).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
RESAMPLE = Image.Resampling.BILINEAR


class BadImage(EdgeclsError):
    """A file that is not a readable image of an accepted format."""


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer modes: scale to 8 bits (Pillow's convert would clip instead)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8), "L")
    return img


def load_image(path: str | Path, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Decode, orient, convert and resize one image.

    Args:
        path: the image file (JPEG, PNG, BMP, GIF (first frame), WebP).
        size: (height, width) of the result; the image is resized with bilinear filtering,
            without keeping the aspect ratio (as Keras' `image_dataset_from_directory` does).
        channels: 3 for RGB (alpha dropped, palette expanded), 1 for grayscale.

    Returns:
        uint8 array of shape (height, width, channels).

    Raises:
        BadImage: the file is empty, truncated, not an image, or of another format.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImage(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency and EXIF warnings
            with Image.open(path) as img:
                if img.format not in FORMATS:
                    raise BadImage(f"{path}: {img.format} images are not supported ({', '.join(FORMATS)})")
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                img = _to_8bit(img)
                if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1", "RGBX"):
                    img = img.convert("RGBA" if "A" in img.mode or img.mode == "P" else "RGB")
                img = img.convert("L" if channels == 1 else "RGB")
                if img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), RESAMPLE)
                arr = np.asarray(img, dtype=np.uint8)
    except BadImage:
        raise
    except UnidentifiedImageError as e:
        raise BadImage(f"{path}: not an image file") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImage(f"{path}: unreadable image ({e})") from e
    return arr.reshape(size[0], size[1], channels)
