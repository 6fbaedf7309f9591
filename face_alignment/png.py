"""Decode 8-bit RGB and RGBA PNG with libspng (``pyspng``) instead of PIL's decoder.

A PNG can only be decoded at full size, so a large upload costs its full-size decode (and, with
transparency, premultiplying every pixel) before it is reduced (``images._reduce``). libspng
decodes such a file in about two thirds of PIL's time (6000x6000 RGBA: ~0.5 s against 0.7-0.9 s
here), straight into a NumPy array that ``images`` reads in strips without copying. Grey and
palette PNGs are left to PIL: libspng's output formats do not include them without widening to
RGB(A), which costs more than it saves. When ``pyspng`` is not installed, or libspng refuses a
file, ``decode`` returns None and the caller decodes with PIL as before, so the answers (and the
error messages for broken files) are PIL's.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

try:
    import pyspng
except ImportError:  # an optional speed-up: PIL decodes every PNG without it
    pyspng = None

log = logging.getLogger(__name__)


def applies(img: Image.Image) -> bool:
    """Whether `img` (opened, not loaded) is a still 8-bit RGB or RGBA PNG that libspng may
    decode (without a tRNS colour key, which PIL turns into transparency)."""
    return (
        pyspng is not None
        and img.format == "PNG"
        and img.mode in ("RGB", "RGBA")
        and "transparency" not in img.info
        and not getattr(img, "is_animated", False)
        and len(img.tile) == 1
        and img.tile[0].args == img.mode  # 8 bits a channel: 16-bit PNG reads "RGBA;16B"
    )


def decode(data: bytes | None, img: Image.Image) -> np.ndarray | None:
    """The HxWxC uint8 pixels (C: 3 for RGB, 4 for RGBA, as `img.mode`) of a PNG file's bytes,
    or None when libspng cannot give them."""
    if pyspng is None or data is None:
        return None
    try:
        pixels = pyspng.load(data, format=img.mode)
    except (RuntimeError, ValueError) as exc:
        log.debug("libspng refused a PNG (%s); PIL decodes it", exc)
        return None
    if pixels.dtype != np.uint8 or pixels.shape != (img.height, img.width, len(img.mode)):
        return None
    return pixels


def exif_block(data: bytes) -> bytes:
    """The file's EXIF block (an ``eXIf`` chunk, wherever it is) as PIL's ``info["exif"]``
    holds it, or b"" when there is none. Walks the chunk headers only: PIL would find an
    ``eXIf`` after the pixel data only by decoding them (``PngImageFile.getexif`` loads)."""
    position = 8  # after the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"eXIf":
            return b"Exif\x00\x00" + data[position + 8 : position + 8 + length]
        if kind == b"IEND":
            break
        position += 12 + length  # length, type, data, CRC
    return b""
