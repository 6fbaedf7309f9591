"""The verification pipeline: decode, detect, align, embed, compare.

The HTTP API, the command line and the LFW evaluation all go through ``Verifier``, so there is
one pipeline to measure and to speed up.
"""

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Literal

import numpy as np

import face_alignment
from face_alignment import (
    DEFAULT_MAX_PIXELS,
    DetectedFace,
    FaceDetector,
    fallback_landmarks,
    load_image_reduced,
    select_face,
    warp_face,
)
from verification.distances import check_metric, pairwise_distances
from verification.embedding import Embedder, embed_crops, normalized
from verification.errors import ImageTooLargeError, InvalidImageError, NoFaceError, NoThresholdError
from verification.runtime import load_engines
from verification.thresholds import default_threshold

DEFAULT_MODEL = "edgeface_s_gamma_05"
# Bump whenever decoding, detection or alignment change their output: caches of embeddings
# (evaluation) are keyed on it.
PIPELINE_VERSION = "3"
FaceChoice = Literal["largest", "center"]
ImageSource = bytes | str | os.PathLike | np.ndarray
Timings = dict[str, float]


@contextmanager
def timed(timings: Timings | None, stage: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``timings[stage]`` (when timings are wanted)."""
    start = perf_counter()
    try:
        yield
    finally:
        if timings is not None:
            timings[stage] = timings.get(stage, 0.0) + perf_counter() - start


@dataclass(frozen=True)
class Photo:
    """Decoded pixels, possibly reduced while decoding, and how to map them back."""

    pixels: np.ndarray
    scale: float = 1.0  # original-image pixels per pixel of ``pixels``

    def to_original(self, face: DetectedFace) -> DetectedFace:
        return face if self.scale == 1.0 else face.scaled(self.scale)


@dataclass(frozen=True)
class FaceEmbedding:
    """One face: where it was found, its aligned crop and its raw embedding."""

    # In original-image pixels; None when no face was found and the centre fallback was used.
    face: DetectedFace | None
    crop: np.ndarray
    embedding: np.ndarray
    face_count: int

    @property
    def unit_embedding(self) -> np.ndarray:
        return normalized(self.embedding[None])[0]


@dataclass(frozen=True)
class Verification:
    distance: float
    threshold: float
    match: bool
    metric: str
    model: str
    faces: tuple[FaceEmbedding, FaceEmbedding]
    timings: dict[str, float] = field(default_factory=dict)


class Verifier:
    """A loaded model and detector. Thread-safe: every call keeps its state on the stack."""

    def __init__(
        self,
        model_name: str,
        embedder: Embedder,
        detector: FaceDetector,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        runtime: str = "torch",
    ) -> None:
        self.model_name = model_name
        self.embedder = embedder
        self.detector = detector
        self.runtime = runtime
        self.max_pixels = max_pixels
        # Detection never looks at more than detector.max_side pixels, so decoding a large JPEG
        # at a reduced size down to that loses nothing it would use.
        self.decode_min_side = detector.max_side

    @classmethod
    def load(
        cls,
        model_name: str = DEFAULT_MODEL,
        checkpoint_dir: str | os.PathLike | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_face_size: int = 20,
        detect_max_side: int | None = 640,
        runtime: str = "auto",
        onnx_dir: str | os.PathLike | None = None,
        threads: int = 1,
    ) -> "Verifier":
        """Load the weights (raising ``CheckpointError`` with advice) and the MTCNN detector.

        ``runtime`` "auto" serves with ONNX Runtime when it is installed (see
        ``verification.runtime``), else PyTorch; ``threads`` is each network's thread count.
        """
        engines = load_engines(model_name, checkpoint_dir, runtime, onnx_dir, threads)
        detector = FaceDetector(
            min_face_size=min_face_size, max_side=detect_max_side, nets=engines.mtcnn
        )
        return cls(model_name, engines.embedder, detector, max_pixels, engines.runtime)

    def decode(
        self, source: ImageSource, field: str = "image", timings: Timings | None = None
    ) -> Photo:
        with timed(timings, "decode"):
            try:
                pixels, scale = load_image_reduced(source, self.max_pixels, self.decode_min_side)
                return Photo(pixels, scale)
            except face_alignment.ImageTooLargeError as exc:
                raise ImageTooLargeError(field, str(exc)) from None
            except face_alignment.InvalidImageError as exc:
                raise InvalidImageError(field, str(exc)) from None

    def detect(
        self, image: np.ndarray, timings: Timings | None = None, largest_only: bool = False
    ) -> list[DetectedFace]:
        with timed(timings, "detect"):
            return self.detector.detect(image, largest_only=largest_only)

    def embed(self, crops: Sequence[np.ndarray], timings: Timings | None = None) -> np.ndarray:
        with timed(timings, "embed"):
            return embed_crops(self.embedder, crops)

    def crop_face(
        self,
        photo: Photo,
        field: str,
        face: FaceChoice,
        fallback: bool,
        timings: Timings | None = None,
    ) -> tuple[np.ndarray, DetectedFace | None, int]:
        """The aligned crop of the chosen face, that face (None for the fallback) and the count."""
        image = photo.pixels
        faces = self.detect(image, timings, largest_only=face == "largest")
        with timed(timings, "align"):
            if not faces:
                if not fallback:
                    raise NoFaceError(field, "no face found in the image")
                return warp_face(image, fallback_landmarks(image.shape[:2])), None, 0
            chosen = select_face(faces, face, image.shape[:2])
            return warp_face(image, chosen.landmarks), photo.to_original(chosen), len(faces)

    def represent_many(
        self,
        sources: Sequence[ImageSource],
        fields: Sequence[str] | None = None,
        face: FaceChoice = "largest",
        fallback: bool = False,
        timings: Timings | None = None,
    ) -> list[FaceEmbedding]:
        """One face per image, all embedded in a single batch.

        With ``fallback`` an image without a detected face is aligned by placing the template on
        its centre (for datasets such as LFW whose faces are centred) instead of failing.
        """
        fields = fields or [f"image{i + 1}" for i in range(len(sources))]
        prepared = [
            self.crop_face(self.decode(src, field, timings), field, face, fallback, timings)
            for src, field in zip(sources, fields, strict=True)
        ]
        embeddings = self.embed([crop for crop, _, _ in prepared], timings)
        return [
            FaceEmbedding(face=found, crop=crop, embedding=emb, face_count=count)
            for (crop, found, count), emb in zip(prepared, embeddings, strict=True)
        ]

    def represent(
        self, source: ImageSource, field: str = "image", face: FaceChoice = "largest"
    ) -> FaceEmbedding:
        return self.represent_many([source], [field], face)[0]

    def embed_faces(
        self,
        source: ImageSource,
        field: str = "image",
        max_faces: int = 1,
        timings: Timings | None = None,
    ) -> list[FaceEmbedding]:
        """Every face in one image, largest first, at most ``max_faces`` of them (0: all)."""
        photo = self.decode(source, field, timings)
        faces = self.detect(photo.pixels, timings, largest_only=max_faces == 1)
        if not faces:
            raise NoFaceError(field, "no face found in the image")
        chosen = faces if max_faces <= 0 else faces[:max_faces]
        with timed(timings, "align"):
            crops = [warp_face(photo.pixels, found.landmarks) for found in chosen]
        embeddings = self.embed(crops, timings)
        return [
            FaceEmbedding(
                face=photo.to_original(found), crop=crop, embedding=emb, face_count=len(faces)
            )
            for found, crop, emb in zip(chosen, crops, embeddings, strict=True)
        ]

    def threshold_for(self, metric: str, threshold: float | None = None) -> float:
        if threshold is not None:
            return float(threshold)
        calibrated = default_threshold(self.model_name, metric)
        if calibrated is None:
            raise NoThresholdError(
                "threshold",
                f"model {self.model_name} has no calibrated {metric} threshold; pass one, or "
                f"calibrate it with python -m evaluation.calibrate",
            )
        return calibrated

    def verify(
        self,
        image1: ImageSource,
        image2: ImageSource,
        metric: str = "cosine",
        threshold: float | None = None,
        face: FaceChoice = "largest",
    ) -> Verification:
        """Decide whether two images show the same person (``distance <= threshold``).

        ``timings`` of the result holds the seconds spent per stage (decode, detect, align,
        embed), summed over both images.
        """
        check_metric(metric)
        limit = self.threshold_for(metric, threshold)
        timings: Timings = {}
        first, second = self.represent_many(
            [image1, image2], ["image1", "image2"], face, timings=timings
        )
        dist = float(pairwise_distances(first.embedding, second.embedding, metric)[0])
        return Verification(
            distance=dist,
            threshold=limit,
            match=dist <= limit,
            metric=metric,
            model=self.model_name,
            faces=(first, second),
            timings=timings,
        )
