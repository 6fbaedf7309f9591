"""Embedding a set of image files through the service pipeline, with an on-disk cache.

Every image goes through ``Verifier.faces_in`` (with the centre-template fallback, so that an
image without a detected face still counts) and ``Verifier.embed``: the code /verify runs.
Results are cached per image, keyed by model, face choice,
``PIPELINE_VERSION``, the runtime (ONNX Runtime or PyTorch) and the file (path, size, mtime), so
that evaluating again with another metric, or calibrating after an evaluation, detects nothing.
"""

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from verification import PIPELINE_VERSION, Timings, Verifier

DEFAULT_CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache" / "edgeface"
FALLBACK = (
    "five-point template placed on the image centre, scaled to its shorter side "
    "(face_alignment.fallback_landmarks)"
)
# Images are detected and embedded in chunks of embed_crops' batch size, so that an uncached run
# feeds the model exactly the batches of one big embed call (calibration numbers stay identical).
CHUNK = 64


@dataclass(frozen=True)
class ImageEmbedding:
    embedding: np.ndarray  # raw, as Verifier.embed returns it
    no_face: bool  # no detection: aligned with FALLBACK
    seconds: float  # pipeline seconds for this image, measured by the run that computed it
    cached: bool  # read from the cache in this run


@dataclass(frozen=True)
class EmbeddedImages:
    model: str
    face: str
    images: dict[Path, ImageEmbedding]

    def embedding(self, path: Path) -> np.ndarray:
        return self.images[path].embedding

    @property
    def no_face_images(self) -> list[Path]:
        return sorted(path for path, image in self.images.items() if image.no_face)

    @property
    def cached_images(self) -> int:
        return sum(image.cached for image in self.images.values())

    @property
    def seconds_per_image(self) -> float | None:
        """Mean over the images computed in this run; over cached figures if none was."""
        computed = [image.seconds for image in self.images.values() if not image.cached]
        seconds = computed or [image.seconds for image in self.images.values()]
        return float(np.mean(seconds)) if seconds else None


class EmbeddingCache:
    """One ``.npz`` per image under ``root/model/face-pPIPELINE_VERSION-runtime[-weights]/``.

    ``weights`` (the checkpoint's hash prefix, ``Verifier.weights``) keeps the embeddings of a
    trained or compressed checkpoint apart from the released one of the same model name."""

    def __init__(
        self, root: Path, model: str, face: str, runtime: str = "torch", weights: str | None = None
    ) -> None:
        suffix = f"-{weights}" if weights else ""
        self.folder = Path(root) / model / f"{face}-p{PIPELINE_VERSION}-{runtime}{suffix}"

    @staticmethod
    def key(path: Path) -> str:
        stat = path.stat()
        return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"

    def _file(self, key: str) -> Path:
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()}.npz"

    def get(self, key: str) -> ImageEmbedding | None:
        try:
            with np.load(self._file(key), allow_pickle=False) as data:
                if str(data["key"]) != key:
                    return None
                return ImageEmbedding(
                    embedding=data["embedding"].astype(np.float32),
                    no_face=bool(data["no_face"]),
                    seconds=float(data["seconds"]),
                    cached=True,
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None  # absent or unreadable: compute it again

    def put(self, key: str, image: ImageEmbedding) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a concurrent or interrupted run never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(
                    out,
                    key=np.str_(key),
                    embedding=image.embedding,
                    no_face=image.no_face,
                    seconds=image.seconds,
                )
            os.replace(tmp, self._file(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def embed_images(
    verifier: Verifier,
    paths: Sequence[Path],
    face: str = "center",
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> EmbeddedImages:
    """Embed every image once with ``verifier``; ``cache_dir=None`` disables the cache."""
    return embed_images_multi([verifier], paths, face, cache_dir, progress)[verifier.model_name]


def embed_images_multi(
    verifiers: Sequence[Verifier],
    paths: Sequence[Path],
    face: str = "center",
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> dict[str, EmbeddedImages]:
    """Embed every image with several models, detecting and aligning each image only once.

    The crops come from the first verifier's detector, so the verifiers should share detector
    settings (calibration gives them one detector).
    """
    paths = list(dict.fromkeys(Path(p) for p in paths))
    names = [v.model_name for v in verifiers]
    caches = {
        v.model_name: (
            EmbeddingCache(cache_dir, v.model_name, face, v.runtime, v.weights)
            if cache_dir
            else None
        )
        for v in verifiers
    }
    keys = {path: EmbeddingCache.key(path) for path in paths}
    found: dict[str, dict[Path, ImageEmbedding]] = {name: {} for name in names}
    for name, cache in caches.items():
        for path in paths if cache else ():
            hit = cache.get(keys[path])
            if hit is not None:
                found[name][path] = hit
    todo = [path for path in paths if any(path not in found[name] for name in names)]
    with tqdm(total=len(todo), desc="detect+align+embed", unit="img", disable=not progress) as bar:
        for chunk in _chunks(todo, CHUNK):
            crops, no_face, seconds = _crops(verifiers[0], chunk, face, bar)
            for verifier in verifiers:
                name = verifier.model_name
                missing = [i for i, path in enumerate(chunk) if path not in found[name]]
                timings: Timings = {}
                raw = verifier.embed([crops[i] for i in missing], timings)
                embed_seconds = timings.get("embed", 0.0) / max(len(missing), 1)
                for i, embedding in zip(missing, raw, strict=True):
                    image = ImageEmbedding(embedding, no_face[i], seconds[i] + embed_seconds, False)
                    found[name][chunk[i]] = image
                    if caches[name]:
                        caches[name].put(keys[chunk[i]], image)
    return {
        name: EmbeddedImages(name, face, {path: found[name][path] for path in paths})
        for name in names
    }


def _crops(
    verifier: Verifier, paths: Sequence[Path], face: str, bar: tqdm
) -> tuple[list[np.ndarray], list[bool], list[float]]:
    """Aligned crop, no-face flag and decode+detect+align seconds of each image."""
    crops, no_face, seconds = [], [], []
    for path in paths:
        timings: Timings = {}
        field = str(path)
        faces = verifier.faces_in(path, field, face, fallback=True, timings=timings)
        crops.append(faces.crops[0])
        no_face.append(faces.chosen[0] is None)
        seconds.append(sum(timings.values()))
        bar.update()
    return crops, no_face, seconds


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
