"""Turn uploads, paths, PIL images and arrays into HxWx3 uint8 RGB arrays, refusing bad input."""

from __future__ import annotations

import errno
import io
import os
import re
import struct
import threading
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, ImageTooLargeError, InvalidImageError

DEFAULT_MAX_PIXELS = 40_000_000

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | Image.Image | np.ndarray


# What PIL's decoders raise on corrupt or truncated data (besides their own OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_PIL_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
# catch_warnings() swaps the process-wide filter list, so concurrent uses would clobber each
# other; serialise ours (header parsing only, which is cheap).
_WARNINGS_LOCK = threading.Lock()


def load_image(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return `source` as an HxWx3 uint8 C-contiguous RGB array.

    Raises InvalidImageError for data that is not a decodable image, ImageTooLargeError when
    width * height exceeds `max_pixels` (checked from the header, before decoding), and
    FileNotFoundError for a missing path.
    """
    return load_image_reduced(source, max_pixels)[0]


def load_image_reduced(
    source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> tuple[np.ndarray, float]:
    """Like `load_image`, but a large JPEG may be decoded at 1/2, 1/4 or 1/8 of its size.

    The JPEG decoder scales in the DCT domain, several times faster than decoding everything
    and resizing. The long side stays at least `min_side` (None: never reduce). Returns the
    pixels and the scale, original pixels per returned pixel (1.0 when not reduced), so that
    coordinates found in the returned image can be mapped back to the original.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels), 1.0
    if isinstance(source, Image.Image):
        return _decode(source, max_pixels, min_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise InvalidImageError("the file is empty")
        return _load_file(io.BytesIO(data), max_pixels, min_side)
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), max_pixels, min_side)
    raise TypeError(f"cannot load an image from a {type(source).__name__}")


def _load_path(
    path: Path, max_pixels: int | None, min_side: int | None
) -> tuple[np.ndarray, float]:
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such image file", str(path))
    with path.open("rb") as fp:
        if os.fstat(fp.fileno()).st_size == 0:
            raise InvalidImageError("the file is empty")
        return _load_file(fp, max_pixels, min_side)


def _load_file(
    fp: BinaryIO, max_pixels: int | None, min_side: int | None
) -> tuple[np.ndarray, float]:
    with _open_header(fp, max_pixels) as img:
        return _decode(img, max_pixels, min_side)


def _decode(
    img: Image.Image, max_pixels: int | None, min_side: int | None = None
) -> tuple[np.ndarray, float]:
    _check_size(*img.size, max_pixels)
    original_long_side = max(img.size)
    if min_side is not None and img.format == "JPEG" and original_long_side > min_side:
        ratio = min_side / original_long_side
        img.draft(None, (max(1, int(img.size[0] * ratio)), max(1, int(img.size[1] * ratio))))
    try:
        img.load()  # the first frame only, for multi-frame GIF/TIFF
    except Image.DecompressionBombError as exc:
        raise _too_large_from_pil(exc, max_pixels) from None
    except _DECODE_ERRORS as exc:
        raise InvalidImageError("the image data is truncated or corrupt") from exc
    pixels = _to_rgb(_apply_exif_orientation(img))
    return pixels, original_long_side / max(pixels.shape[:2])


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS:
        # A damaged EXIF block should not cost us an otherwise good photo.
        return img


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    pixels = width * height
    if pixels == 0:
        raise InvalidImageError("the image has no pixels")
    if max_pixels is not None and pixels > max_pixels:
        raise ImageTooLargeError(
            f"the image has {pixels:,} pixels ({width}x{height}), "
            f"more than the limit of {max_pixels:,}"
        )


def _too_large_from_pil(exc: Image.DecompressionBombError, max_pixels: int | None) -> ImageError:
    match = _PIL_BOMB_PIXELS.search(str(exc))
    count = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
    pil_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    limit = pil_limit if max_pixels is None else min(max_pixels, pil_limit)
    return ImageTooLargeError(f"the image has {count}, more than the limit of {limit:,}")


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode == "RGB":
        return np.array(img, dtype=np.uint8, order="C")
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        return _gray_to_rgb(_high_depth_to_uint8(img))
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        # La has no direct conversion to RGBA in PIL; going through LA is lossless.
        rgba = img.convert("LA").convert("RGBA") if img.mode == "La" else img.convert("RGBA")
        return _composite_on_white(np.array(rgba))
    try:
        return np.array(img.convert("RGB"), dtype=np.uint8, order="C")
    except ValueError as exc:
        raise InvalidImageError(f"the colour mode {img.mode} is not supported") from exc


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """Map 16/32-bit integer or float gray values onto 0..255 by their value range, no clipping.

    Integer data uses the 16-bit range (as image viewers do) when it fits there; float data in
    [0, 1] or [0, 255] keeps its scale; anything else is stretched from its own min..max.
    """
    values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if img.mode != "F":
        return _scale_to_uint8(values, full_scale=65535.0)
    return _scale_to_uint8(values, full_scale=1.0 if values.max() <= 1.0 else 255.0)


def _scale_to_uint8(values: np.ndarray, full_scale: float) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > full_scale:
        full_scale = hi - lo
        values = values - lo
    scaled = values * (255.0 / full_scale) if full_scale > 0 else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, np.newaxis], 3, axis=2))


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA -> RGB over a white background (transparent uploads are usually
    logos or cut-outs meant to be seen on white)."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.ascontiguousarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def _from_array(array: np.ndarray, max_pixels: int | None) -> np.ndarray:
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InvalidImageError(
            f"expected an HxW, HxWx3 or HxWx4 pixel array, got shape {array.shape}"
        )
    _check_size(array.shape[1], array.shape[0], max_pixels)
    pixels = _array_to_uint8(array)
    if pixels.ndim == 2:
        return _gray_to_rgb(pixels)
    if pixels.shape[2] == 4:
        return _composite_on_white(pixels)
    return np.array(pixels, dtype=np.uint8, order="C")


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return _scale_to_uint8(array.astype(np.float64), full_scale=65535.0)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise InvalidImageError("float pixel values must be finite and lie in [0, 1]")
        return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    raise InvalidImageError(f"unsupported pixel type {array.dtype} (use uint8, uint16 or float)")


def _open_header(fp: BinaryIO, max_pixels: int | None) -> Image.Image:
    """The image with only its header read (PIL decodes nothing until ``load``)."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        # Our own limit decides; PIL's warning (or error, past twice its limit) must not come first.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise _too_large_from_pil(exc, max_pixels) from None
        except UnidentifiedImageError:
            raise InvalidImageError("the file is not an image in a supported format") from None
        except _DECODE_ERRORS as exc:
            raise InvalidImageError("the image header is corrupt") from exc


def probe_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, from the header alone (tens of microseconds), what decoding would refuse before
    reading pixel data: empty data, not an image or not a supported format, a corrupt or
    truncated header (``InvalidImageError``), more than ``max_pixels`` (``ImageTooLargeError``).

    The service runs this before an upload waits for a worker, so only uploads that may decode
    take one. Passing it does not promise a decodable image: truncated pixel data is found by
    decoding.
    """
    if not data:
        raise InvalidImageError("the file is empty")
    with _open_header(io.BytesIO(data), max_pixels) as img:
        _check_size(*img.size, max_pixels)
