"""The images a benchmark run verifies: portraits, the same portraits upscaled, group photos.

Everything is encoded JPEG bytes in memory before any timing starts, so a measured verify reads
no file.
"""

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image

import environment

UPSCALED_LONG_SIDE = 2048
UPSCALED_JPEG_QUALITY = 95

Pair = tuple[bytes, bytes]


@dataclass(frozen=True)
class ImageSet:
    name: str
    description: str
    pairs: list[Pair]


def checkpoint_dir() -> Path:
    """$EDGEFACE_CHECKPOINT_DIR, else the real weights in ``../shared/checkpoints``."""
    return Path(environment.value(environment.CHECKPOINT_DIR) or environment.SHARED / "checkpoints")


def portrait_paths(folder: Path) -> list[Path]:
    paths = sorted(folder.glob("0*.jpg"))
    if len(paths) < 2:
        raise FileNotFoundError(f"fewer than two portraits 0NN_*.jpg in {folder}")
    return paths


def office_paths(folder: Path) -> list[Path]:
    paths = sorted(folder.glob("office*.jpg"))
    if len(paths) < 2:
        raise FileNotFoundError(f"fewer than two group photos office*.jpg in {folder}")
    return paths


def rotating_pairs(size: int, count: int) -> list[tuple[int, int]]:
    """``count`` index pairs over ``size`` items, each item used equally often.

    Pairs (i, i + 1) all round, then (i, i + 2), and so on, so repeats only start once every
    neighbour offset has been used.
    """
    pairs = []
    for k in range(count):
        offset = 1 + (k // size) % (size - 1)
        first = k % size
        pairs.append((first, (first + offset) % size))
    return pairs


def upscale_jpeg(data: bytes, long_side: int = UPSCALED_LONG_SIDE) -> bytes:
    """The image resized (LANCZOS) to ``long_side`` pixels on its long side, as JPEG q=95."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    scale = long_side / max(rgb.size)
    size = (round(rgb.width * scale), round(rgb.height * scale))
    buffer = io.BytesIO()
    rgb.resize(size, Image.Resampling.LANCZOS).save(
        buffer, format="JPEG", quality=UPSCALED_JPEG_QUALITY
    )
    return buffer.getvalue()


def pairs_of(images: list[bytes], count: int) -> list[Pair]:
    return [(images[a], images[b]) for a, b in rotating_pairs(len(images), count)]


def upscaled_pairs(originals: list[bytes], count: int) -> list[Pair]:
    """Like ``pairs_of``, upscaling only the portraits the pairs use (once each)."""
    upscaled = cache(lambda index: upscale_jpeg(originals[index]))
    return [(upscaled(a), upscaled(b)) for a, b in rotating_pairs(len(originals), count)]


def build_sets(folder: Path, portraits: int, upscaled: int, office: int) -> list[ImageSet]:
    """The three sets with the given numbers of pairs."""
    portrait_bytes = [path.read_bytes() for path in portrait_paths(folder)]
    office_bytes = [path.read_bytes() for path in office_paths(folder)]
    return [
        ImageSet(
            "portraits", "portraits 0NN_*.jpg as they are", pairs_of(portrait_bytes, portraits)
        ),
        ImageSet(
            "upscaled_2048",
            f"portraits upscaled to {UPSCALED_LONG_SIDE} px",
            upscaled_pairs(portrait_bytes, upscaled),
        ),
        ImageSet("office", "group photos office*.jpg", pairs_of(office_bytes, office)),
    ]
