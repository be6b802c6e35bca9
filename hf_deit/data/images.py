"""Decode dataset images robustly and bring every pixel format to 8-bit RGB.

Why not let ``datasets`` decode: its ``Image`` feature decodes *before* our transform runs, so one
corrupt or truncated file raises deep inside the data loader with no row number, and a
10,000 x 10,000 photo is decoded at full size (300 MB) only to be resized to 32 x 32. Training
therefore reads the image column with ``Image(decode=False)`` (a feature-only cast: no data is
rewritten) and decodes here, where a failure becomes a :class:`BadImageError` that the data module
can skip or report by row, and where large JPEGs are decoded at a reduced scale.

Colour conversion (:func:`to_rgb`): Pillow's ``convert("RGB")`` clips 16-bit images to 255 (a
16-bit photo turns white), drops alpha (revealing whatever colour transparent pixels hold) and
warns on palette transparency. Here transparency is composited onto white, as
``transformers.image_transforms.convert_to_rgb`` does, and high-bit-depth images are rescaled.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Optional

import numpy as np
from PIL import Image, ImageOps

# Above this many pixels an image is reduced right after decoding (JPEG: while decoding) so that
# its short side stays >= LARGE_IMAGE_MIN_SIDE: far more than any transform here needs, while
# images below it (all of CIFAR and ImageNet) are left exactly as the stock pipeline sees them.
LARGE_IMAGE_PIXELS = 4096 * 4096
LARGE_IMAGE_MIN_SIDE = 1024
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class BadImageError(ValueError):
    """An image that cannot be decoded or converted (corrupt, truncated, unsupported, too large)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode, with transparency composited onto white.

    * 16-bit (``I;16*``): scaled by 255/65535 (rounded), so 65535 -> 255, not clipped.
    * 32-bit integer (``I``): Pillow produces it from 8-bit data (values 0..255, kept as is) and
      from 16-bit PNG/TIFF (0..65535, scaled like ``I;16``); anything else (negative, > 65535) is
      stretched from its minimum to its maximum.
    * float (``F``): [0, 1] (the float convention) is scaled by 255; [0, 255] kept; anything else
      stretched from its minimum to its maximum; NaN becomes 0.
    * alpha (RGBA, LA, PA, premultiplied RGBa/La) and palette or grey images with a transparent
      colour: composited onto white.
    * everything else (L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX): Pillow's conversion.
    """
    return _to_rgb(image, image.mode)


def _to_rgb(image: Image.Image, scaling_mode: str) -> Image.Image:
    """``scaling_mode``: the mode whose value range applies (an ``I;16`` image reduced as ``I`` keeps
    the 16-bit rule)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return Image.fromarray(_high_bit_depth_to_uint8(np.asarray(image), scaling_mode), mode="L").convert("RGB")
    if mode == "La":
        image, mode = image.convert("RGBa"), "RGBa"
    if mode in ALPHA_MODES or (mode in ("P", "L", "RGB", "1") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_bit_depth_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    values = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode in SIXTEEN_BIT_MODES or (mode == "I" and 255 < high <= 65535 and low >= 0):
        scaled = values * (255.0 / 65535.0)
    elif mode == "I" and 0 <= low and high <= 255:
        scaled = values
    elif mode == "F" and 0 <= low and high <= 1:
        scaled = values * 255.0
    elif mode == "F" and 0 <= low and high <= 255:
        scaled = values
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled, out=scaled), 0, 255).astype(np.uint8)


def _open(value: Any) -> Image.Image:
    """A lazily opened PIL image from what a dataset row holds (bytes/path dict, path, PIL, array)."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    if isinstance(value, str):
        value = {"path": value, "bytes": None}
    if not isinstance(value, dict):
        raise BadImageError(f"unsupported image value of type {type(value).__name__}")
    data, path = value.get("bytes"), value.get("path")
    if data is not None:
        return Image.open(io.BytesIO(data))
    if path is not None and os.path.isfile(path):
        return Image.open(path)
    if path is not None:  # a remote file (hf://, https://): let `datasets` fetch it with its credentials
        from datasets import Image as ImageFeature

        return ImageFeature(decode=True).decode_example(value)
    raise BadImageError("the row holds neither image bytes nor a path")


def decode_image(value: Any) -> Image.Image:
    """Decode, orient (EXIF), shrink if huge, convert to RGB; any failure is a :class:`BadImageError`.

    Pillow's decompression-bomb *error* (over ~179M pixels) is kept as a guard against malicious
    files and reported as a bad image; its *warning* (over ~89M pixels) is silenced because large
    images are legitimate here and are reduced at once.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(value)
            width, height = image.size
            large = width * height > LARGE_IMAGE_PIXELS
            if large and image.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale (DCT scaling): memory and time shrink with it.
                scale = min(width, height) / LARGE_IMAGE_MIN_SIDE
                image.draft("RGB", (int(width / scale), int(height / scale)))
            image.load()
            if image.getexif().get(Image.ExifTags.Base.Orientation) is not None:
                image = ImageOps.exif_transpose(image)
            scaling_mode = image.mode
            factor = min(image.size) // LARGE_IMAGE_MIN_SIDE if large else 1
            if factor >= 2:
                if image.mode in ("P", "PA", "1"):  # palette indices cannot be averaged
                    image = to_rgb(image)
                elif image.mode in SIXTEEN_BIT_MODES:  # Pillow reduces 16-bit only as 32-bit "I"
                    image = image.convert("I")
                image = image.reduce(factor)
            return _to_rgb(image, scaling_mode)
    except BadImageError:
        raise
    except MemoryError:
        raise
    except Image.DecompressionBombError as error:
        raise BadImageError(
            f"{error} If the image is legitimate, raise PIL.Image.MAX_IMAGE_PIXELS before training or shrink it."
        ) from error
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ... on bad files
        raise BadImageError(f"{type(error).__name__}: {error}") from error


def describe_source(value: Any) -> Optional[str]:
    """The file name a row's image came from, if the dataset kept one (image folders do)."""
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    return None
