"""Decode one image file into the model's input: uint8 HxWxC, raw 0-255 pixels. No TensorFlow.

Training, verify and the embeddable runtime all call `load_image`, so an image is decoded and
resized the same way everywhere.

Images are untrusted input. A file whose header announces more than `MAX_PIXELS` pixels (a
decompression bomb: a few KB on disk, gigabytes decoded) is refused before any pixel is decoded,
as are truncated files and anything the decoder chokes on: each is a `BadImage` naming the file,
which an image folder refuses (or skips with ``--skip-bad``) like any unreadable file. Decoding
memory is bounded by `MAX_PIXELS` (at most 4 bytes a pixel) per image being decoded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadInput, EdgeclsError

#: Formats accepted in an image folder (Pillow decodes them; the extension is not trusted).
FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
RESAMPLE = Image.Resampling.BILINEAR
MAX_PIXELS_ENV = "EDGECLS_MAX_IMAGE_PIXELS"
#: The largest image accepted, in pixels (width x height): 40 megapixels (e.g. 7,750 x 5,160), above
#: any common camera's default output. Set EDGECLS_MAX_IMAGE_PIXELS to change it.
MAX_PIXELS = 40_000_000


def max_pixels() -> int:
    """The pixel limit in force: $EDGECLS_MAX_IMAGE_PIXELS, else `MAX_PIXELS`."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if not value:
        return MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise EdgeclsError(f"{MAX_PIXELS_ENV}={value!r}: expected a positive whole number of pixels")
    return limit


class BadImage(BadInput):
    """A file that is not a readable image of an accepted format."""


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer modes: scale to 8 bits (Pillow's convert would clip instead). Done in
    Pillow (4 bytes a pixel at most, as decoding itself), never through a float64 array (8 more)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = img if img.mode == "I" else img.convert("I")
        top = 65535.0 if img.mode.startswith("I;16") or wide.getextrema()[1] > 255 else 255.0
        return wide.point(lambda v: v * (255.0 / top) + 0.5).convert("L")  # rounded; convert clips to 0-255
    if img.mode == "F":
        return img.point(lambda v: v * 255.0 + 0.5).convert("L")
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
        BadImage: the file is empty, truncated, not an image, of another format, or larger than
            `max_pixels()` (a decompression bomb is refused from its header, before decoding).
    """
    path = Path(path)
    limit = max_pixels()
    try:
        if path.stat().st_size == 0:
            raise BadImage(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency and EXIF warnings
            with Image.open(path) as img:
                if img.format not in FORMATS:
                    raise BadImage(f"{path}: {img.format} images are not supported ({', '.join(FORMATS)})")
                w, h = img.size
                if w < 1 or h < 1 or w * h > limit:
                    raise BadImage(f"{path}: {w:,} x {h:,} pixels is over the limit of {limit:,} pixels "
                                   f"(a decompression bomb, or set {MAX_PIXELS_ENV})")
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
    except Image.DecompressionBombError as e:  # Pillow's own check, at open, past twice its limit
        raise BadImage(f"{path}: over the pixel limit ({e})") from e
    except MemoryError as e:
        raise BadImage(f"{path}: too large to decode in memory") from e
    except Exception as e:  # a hostile file can make a decoder raise anything (struct.error, IndexError, ...)
        raise BadImage(f"{path}: unreadable image ({type(e).__name__}: {e})") from e
    return arr.reshape(size[0], size[1], channels)
