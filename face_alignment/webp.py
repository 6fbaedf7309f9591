"""Decode a WebP file straight to a smaller size with libwebp's own scaler, through ctypes.

PIL decodes WebP only at full size (a 6000x6000 file is 144 MB of RGBA and seconds of work
before it can be reduced). libwebp can scale while it decodes, row by row, so the full-size
image never exists. Pillow's wheels bundle libwebp (``pillow.libs``); a system ``libwebp`` works
too. When neither loads, or the library answers unexpectedly, ``decode_scaled`` returns None
and the caller decodes with PIL as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

log = logging.getLogger(__name__)

# decode.h: WEBP_DECODER_ABI_VERSION is MAJOR(8 bits) + MINOR(8 bits); libwebp refuses a config
# whose major differs from its own, and every 1.x release has major 2.
_ABI_VERSION = 0x0209
_MODE_RGB = 0
_MODE_PREMULTIPLIED_RGBA = 7  # MODE_rgbA
_STATUS_OK = 0


class _Features(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("has_alpha", ctypes.c_int),
        ("has_animation", ctypes.c_int),
        ("format", ctypes.c_int),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [
        ("y", ctypes.c_void_p),
        ("u", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("a", ctypes.c_void_p),
        ("y_stride", ctypes.c_int),
        ("u_stride", ctypes.c_int),
        ("v_stride", ctypes.c_int),
        ("a_stride", ctypes.c_int),
        ("y_size", ctypes.c_size_t),
        ("u_size", ctypes.c_size_t),
        ("v_size", ctypes.c_size_t),
        ("a_size", ctypes.c_size_t),
    ]


class _Buffers(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("is_external_memory", ctypes.c_int),
        ("u", _Buffers),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


class _Options(ctypes.Structure):
    _fields_ = [
        ("bypass_filtering", ctypes.c_int),
        ("no_fancy_upsampling", ctypes.c_int),
        ("use_cropping", ctypes.c_int),
        ("crop_left", ctypes.c_int),
        ("crop_top", ctypes.c_int),
        ("crop_width", ctypes.c_int),
        ("crop_height", ctypes.c_int),
        ("use_scaling", ctypes.c_int),
        ("scaled_width", ctypes.c_int),
        ("scaled_height", ctypes.c_int),
        ("use_threads", ctypes.c_int),
        ("dithering_strength", ctypes.c_int),
        ("flip", ctypes.c_int),
        ("alpha_dithering_strength", ctypes.c_int),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _Config(ctypes.Structure):
    _fields_ = [
        ("input", _Features),
        ("output", _DecBuffer),
        ("options", _Options),
        # Room to spare, should a future libwebp's config be larger than the one declared here.
        ("spare", ctypes.c_uint8 * 256),
    ]


def _candidates() -> list[str]:
    bundled = Path(PIL.__file__).resolve().parent.parent / "pillow.libs"
    found = sorted(str(path) for path in bundled.glob("libwebp-*.so*"))
    system = ctypes.util.find_library("webp")
    return found + ([system] if system else [])


@functools.cache
def _library() -> ctypes.CDLL | None:
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
            lib.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(_Config), ctypes.c_int]
            lib.WebPGetFeaturesInternal.argtypes = [
                ctypes.c_char_p,
                ctypes.c_size_t,
                ctypes.POINTER(_Features),
                ctypes.c_int,
            ]
            lib.WebPDecode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Config)]
            lib.WebPFreeDecBuffer.argtypes = [ctypes.POINTER(_DecBuffer)]
        except (OSError, AttributeError):
            continue
        if _works(lib):
            return lib
        log.warning("libwebp at %s decodes unexpectedly; WebP is decoded by PIL", name)
    return None


def _works(lib: ctypes.CDLL) -> bool:
    """Decode a small known image with `lib` and compare: guards the struct layout above."""
    import io

    colours = np.zeros((32, 48, 4), dtype=np.uint8)
    colours[:, :24] = (200, 40, 10, 255)
    colours[:, 24:] = (10, 40, 200, 0)  # transparent: white once composited
    data = io.BytesIO()
    Image.fromarray(colours).save(data, "WEBP", lossless=True)
    pixels = _decode(lib, data.getvalue(), (12, 8))
    if pixels is None or pixels.shape != (8, 12, 3):
        return False
    return bool(
        np.abs(pixels[:, :5].astype(int) - (200, 40, 10)).max() <= 2
        and np.abs(pixels[:, 7:].astype(int) - 255).max() <= 2
    )


def _decode(lib: ctypes.CDLL, data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    config = _Config()
    if not lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _ABI_VERSION):
        return None
    if lib.WebPGetFeaturesInternal(data, len(data), ctypes.byref(config.input), _ABI_VERSION):
        return None
    if config.input.has_animation:
        return None
    width, height = size
    alpha = bool(config.input.has_alpha)
    pixels = np.empty((height, width, 4 if alpha else 3), dtype=np.uint8)
    config.options.use_scaling = 1
    config.options.scaled_width, config.options.scaled_height = width, height
    config.output.colorspace = _MODE_PREMULTIPLIED_RGBA if alpha else _MODE_RGB
    config.output.is_external_memory = 1
    config.output.u.RGBA.rgba = pixels.ctypes.data
    config.output.u.RGBA.stride = pixels.strides[0]
    config.output.u.RGBA.size = pixels.nbytes
    status = lib.WebPDecode(data, len(data), ctypes.byref(config))
    lib.WebPFreeDecBuffer(ctypes.byref(config.output))
    if status != _STATUS_OK:
        return None
    if not alpha:
        return pixels
    # Premultiplied colour over white is colour + (255 - alpha); colour <= alpha, no overflow.
    return np.ascontiguousarray(pixels[:, :, :3] + (255 - pixels[:, :, 3:]))


def decode_scaled(data: bytes | None, size: tuple[int, int]) -> Image.Image | None:
    """A still WebP file decoded at `size` (width, height) as RGB, transparency on white;
    None when it cannot be done this way (no usable libwebp, animation, corrupt data): the
    caller then decodes with PIL, which also reports what is wrong with the file."""
    lib = _library()
    if lib is None or not data:
        return None
    pixels = _decode(lib, data, size)
    return None if pixels is None else Image.fromarray(pixels)
