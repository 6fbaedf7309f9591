"""Turn uploads, paths, PIL images and arrays into HxWx3 uint8 RGB arrays, refusing bad input."""

from __future__ import annotations

import ctypes
import errno
import io
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from . import png, webp
from .errors import ImageError, ImageTooLargeError, InvalidImageError

DEFAULT_MAX_PIXELS = 40_000_000

ImageSource = bytes | bytearray | memoryview | str | os.PathLike | Image.Image | np.ndarray


# What PIL's decoders raise on corrupt or truncated data (besides their own OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Strips of about a million pixels: a few MB in a wide mode, and few enough calls into PIL.
_STRIP_PIXELS = 1 << 20
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_PIL_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
# catch_warnings() swaps the process-wide filter list, so concurrent uses would clobber each
# other; serialise ours (header parsing only, which is cheap).
_WARNINGS_LOCK = threading.Lock()


# glibc's malloc: above M_MMAP_THRESHOLD a block is mmap'ed and unmapped when freed; a free top
# of the heap larger than M_TRIM_THRESHOLD is given back to the system.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc refuses more on 64-bit
DECODE_MEMORY_KEPT_MB = 256  # the service's default (EDGEFACE_DECODE_MEMORY_KEPT_MB)


def keep_decode_memory(kept_bytes: int = DECODE_MEMORY_KEPT_MB << 20) -> bool:
    """Have this process keep up to `kept_bytes` of freed heap for the next decode (glibc only;
    False elsewhere, where nothing changes).

    A large upload is decoded through buffers of megabytes (the full-size picture, then strips
    converted and reduced). By default glibc returns each to the system when freed, and the
    next one is mapped again page by page: a 6000x6000 PNG decode in a fresh process took about
    92,000 page faults and 0.4 s of system time here, as much as the decode's own work. Kept in
    the heap they are reused: 15,000 faults the first time, none after, and a decode costs a
    quarter to 40% less CPU (``python -m benchmarks.decode``). The price is resident memory: a
    process keeps the heap its largest decode needed (under 200 MB at the 40-megapixel limit)
    instead of shrinking back.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and mallopt(_M_TRIM_THRESHOLD, kept_bytes)
    )


# glibc (2.35 and later) reads GLIBC_TUNABLES once, when a process starts. With this one malloc
# asks the kernel for transparent huge pages (madvise) on its heap and on the blocks it maps: a
# large decode's buffers (160 MB for 40 megapixels of lossless WebP, mapped anew for each upload
# above M_MMAP_THRESHOLD's 32 MB) then fault in 2 MB at a time instead of 4 KB, which took a
# sixth of such a decode's CPU time here. Nothing changes where transparent huge pages are off
# ("never") or the C library is not glibc.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def with_huge_pages(tunables: str | None) -> str:
    """GLIBC_TUNABLES for a process that will decode uploads: `tunables` (the value it would
    inherit) with `HUGE_PAGES_TUNABLE` added, unless it already sets glibc.malloc.hugetlb (so
    ``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` turns it off)."""
    entries = [entry for entry in (tunables or "").split(":") if entry]
    if any(entry.split("=", 1)[0] == "glibc.malloc.hugetlb" for entry in entries):
        return ":".join(entries)
    return ":".join([*entries, HUGE_PAGES_TUNABLE])


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
    """Like `load_image`, but a large image is decoded at a fraction of its size.

    The long side stays at least `min_side` (None: never reduce): a JPEG is scaled in the DCT
    domain to under twice that; other formats are averaged over boxes by a whole factor, to
    between twice and four times `min_side` (see `_box_factor`): WebP in libwebp's decoder, so
    the full-size image never exists, the rest decoded in their own compact mode and reduced in
    C before any conversion (see `_reduce`). Cost and memory stay bounded by the pixel limit.
    Returns the pixels and the scale, original pixels per returned pixel (1.0 when not
    reduced), so that coordinates found in the returned image can be mapped back to the
    original.
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
    factor = _box_factor(original_long_side, min_side)
    reduced = None
    exif = None  # the EXIF block, when read without PIL (whose getexif() may decode the PNG)
    if factor > 1 and img.format == "WEBP" and not getattr(img, "is_animated", False):
        # PIL decodes WebP only at full size; libwebp scales while decoding.
        reduced = webp.decode_scaled(_file_bytes(img), _reduced_size(img.size, factor))
    if reduced is None and png.applies(img):
        # libspng decodes in about two thirds of PIL's time; its array is read in strips.
        data = _file_bytes(img)
        pixels = png.decode(data, img)
        if pixels is not None:
            reduced = _reduce_strips(
                img.size, factor, lambda top, bottom: _array_rows(pixels, img.mode, top, bottom)
            )
            exif = png.exif_block(data)
    if reduced is None:
        if min_side is not None and img.format == "JPEG" and original_long_side > min_side:
            # The JPEG decoder scales by 1/2, 1/4 or 1/8 in the DCT domain; reduce() does the rest.
            ratio = min_side / original_long_side
            img.draft(None, (max(1, int(img.size[0] * ratio)), max(1, int(img.size[1] * ratio))))
        try:
            img.load()  # the first frame only, for multi-frame GIF/TIFF
        except Image.DecompressionBombError as exc:
            raise _too_large_from_pil(exc, max_pixels) from None
        except _DECODE_ERRORS as exc:
            raise InvalidImageError("the image data is truncated or corrupt") from exc
        reduced = _reduce(img, _box_factor(max(img.size), min_side))
    pixels = _to_rgb(_orient(reduced, _orientation(img, exif)))
    return pixels, original_long_side / max(pixels.shape[:2])


def _box_factor(long_side: int, min_side: int | None) -> int:
    """The whole factor to average boxes by: the long side stays in [2, 4) x min_side.

    Twice min_side, where the JPEG decoder's DCT scaling may go down to min_side: a picture
    averaged over boxes (reduce(), libwebp's scaler), which the detector then resizes again,
    differs enough from a resize of the full one to move MTCNN's landmarks. Reduced to just
    640 px, embeddings vs a full-size decode fell to cosine 0.74 (lowest of 21 portraits
    upscaled 8x, PNG); kept at 1280 px, 0.9895 (mean 0.9975).
    """
    return 1 if min_side is None else max(1, long_side // (2 * min_side))


def _file_bytes(img: Image.Image) -> bytes | None:
    fp = getattr(img, "fp", None)
    try:
        fp.seek(0)
        return fp.read()
    except (AttributeError, OSError, ValueError):  # no file, or one already closed
        return None


def _reduced_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """What Image.reduce(factor) gives: partial blocks at the edges count as pixels."""
    return (-(-size[0] // factor), -(-size[1] // factor))


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """`img` averaged over factor x factor blocks (factor 1: as is) as RGB or L, any
    transparency composited on white, or as I/F for high bit depths.

    PIL's decoders (other than JPEG's and WebP's) only produce the full-size image in its own
    mode, which is the compact one (1 byte a pixel for palette, 2 for 16-bit gray). Converting
    that to a wide mode (RGBA, 32-bit) at full size would cost up to 160 MB more at 40 MP, and
    NumPy in float several times that. So conversion and reduction run in C on horizontal
    strips, and only the small result is kept. Transparent pixels are averaged premultiplied
    (as PIL's own reduce() does for RGBA), so the result is what the image shown on white and
    then scaled looks like, and is composited on white at the reduced size.
    """
    if img.mode in ("RGB", "L", "I", "F") and "transparency" not in img.info:
        return img.reduce(factor) if factor > 1 else img
    return _reduce_strips(
        img.size, factor, lambda top, bottom: img.crop((0, top, img.width, bottom))
    )


def _reduce_strips(
    size: tuple[int, int], factor: int, strip: Callable[[int, int], Image.Image]
) -> Image.Image:
    """`_reduce` over an image given as `strip(top, bottom)`, its rows top to bottom - 1."""
    width, height = size
    rows = factor * max(1, _STRIP_PIXELS // (width * factor))
    out = None
    for top in range(0, height, rows):
        piece = _averageable(strip(top, min(height, top + rows)))
        piece = _on_white(piece.reduce(factor) if factor > 1 else piece)
        if out is None:
            out = Image.new(piece.mode, _reduced_size(size, factor))
        out.paste(piece, (0, top // factor))
    return out


def _array_rows(pixels: np.ndarray, mode: str, top: int, bottom: int) -> Image.Image:
    """Rows of an HxWxC uint8 array as an image of `mode` (RGBA: sharing their memory)."""
    rows = pixels[top:bottom]
    return Image.frombuffer(mode, (rows.shape[1], rows.shape[0]), rows, "raw", mode, 0, 1)


def _averageable(img: Image.Image) -> Image.Image:
    """`img` in a mode whose pixels can be averaged: RGB, L, I, F, or premultiplied RGBa/La."""
    if img.mode in _SIXTEEN_BIT_MODES:
        return img.convert("I")
    if img.mode in ("I", "F", "RGBa", "La"):
        return img
    if img.mode in ("RGB", "L") and "transparency" not in img.info:
        return img
    if img.mode == "LA":
        return img.convert("La")
    if img.mode == "RGBA" and "transparency" not in img.info:
        return img.convert("RGBa")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return img.convert("RGBA").convert("RGBa")
    if img.mode == "1":  # L without transparency is returned as it is above
        return img.convert("L")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise InvalidImageError(f"the colour mode {img.mode} is not supported") from exc


def _on_white(img: Image.Image) -> Image.Image:
    """Premultiplied RGBa/La -> RGB/L over a white background (transparent uploads are usually
    logos or cut-outs meant to be seen on white); other modes unchanged."""
    if img.mode not in ("RGBa", "La"):
        return img
    pixels = np.asarray(img)
    # Premultiplied colour over white is colour + (255 - alpha); colour <= alpha, no overflow.
    flat = pixels[:, :, :-1] + (255 - pixels[:, :, -1:])
    return Image.fromarray(flat[:, :, 0] if img.mode == "La" else flat)


def _orientation(img: Image.Image, exif: bytes | None = None) -> int:
    """The EXIF orientation of `img`, or of the EXIF block `exif` when given (b"": none)."""
    try:
        if exif is None:
            tags = img.getexif()
        else:
            tags = Image.Exif()
            tags.load(exif)
        return int(tags.get(ExifTags.Base.Orientation, 1))
    except (*_DECODE_ERRORS, TypeError):
        # A damaged EXIF block should not cost us an otherwise good photo.
        return 1


def _orient(img: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation to `img` (the reduced image, which has lost the EXIF block)."""
    method = _EXIF_TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


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
    """An image as `_reduce` leaves it (RGB, L, I or F) -> HxWx3 uint8."""
    if img.mode in ("I", "F"):
        return _gray_to_rgb(_high_depth_to_uint8(img))
    if img.mode == "L":
        return _gray_to_rgb(np.asarray(img, dtype=np.uint8))
    return np.array(img, dtype=np.uint8, order="C")


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
        return _to_rgb(_reduce(Image.fromarray(pixels), 1))
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
