"""The verification pipeline: decode, detect, align, embed, compare.

The HTTP API, the command line and the LFW evaluation all go through ``Verifier``, and every
caller takes the same face path: per image the faces found, the chosen ones and their aligned
crops (``Verifier.faces_in``), then one embedding batch for all crops (``Verifier.embed``).
"""

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Literal

import numpy as np

import environment
from backbones.catalog import checkpoint_path, file_sha256
from face_alignment import (
    DEFAULT_MAX_PIXELS,
    DETECT_MAX_SIDE,
    MIN_FACE_SIZE,
    DetectedFace,
    FaceDetector,
    ImageSource,
    InputError,
    fallback_landmarks,
    load_image_reduced,
    select_face,
    warp_face,
)
from verification.distances import check_metric, pairwise_distances
from verification.embedding import Embedder, embed_crops, normalized
from verification.errors import NoFaceError, NoThresholdError, ThresholdOptionError
from verification.runtime import load_engines
from verification.thresholds import FARS, Thresholds, model_thresholds

# Bump whenever decoding, detection or alignment change their output: caches of embeddings
# (evaluation) are keyed on it.
PIPELINE_VERSION = "4"  # 4: every format decoded reduced (issue 10)
FaceChoice = Literal["largest", "center"]
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
class ImageFaces:
    """What one image gave: how many faces were found, the chosen ones and their crops."""

    # In original-image pixels; a None entry is the centre fallback (no face was found).
    chosen: tuple[DetectedFace | None, ...]
    crops: tuple[np.ndarray, ...]  # aligned 112x112x3 uint8 RGB, one per chosen face
    face_count: int  # every face found, also those not chosen


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
class OperatingPoint:
    """A decision threshold and the false-match rate it stands for (None: not calibrated,
    e.g. a threshold the caller chose)."""

    threshold: float
    far: float | None


def given_threshold(threshold: float | None, far: float | None) -> OperatingPoint | None:
    """The caller's own threshold, if they gave one; ``threshold`` and ``far`` together are
    refused (``ThresholdOptionError``)."""
    if threshold is not None and far is not None:
        raise ThresholdOptionError("give threshold or far, not both", "far")
    return None if threshold is None else OperatingPoint(float(threshold), None)


def calibrated_far(far: float) -> float:
    """``far`` as the calibrated rate of ``FARS`` it names (float noise tolerated), else
    ``ThresholdOptionError``."""
    calibrated = next((f for f in FARS if abs(f - far) <= 1e-9 * f), None)
    if calibrated is None:
        rates = ", ".join(f"{f:g}" for f in FARS)
        raise ThresholdOptionError(f"far must be one of {rates}, not {far:g}", "far")
    return calibrated


@dataclass(frozen=True)
class Verification:
    distance: float
    threshold: float
    far: float | None  # the false-match rate the threshold stands for, when calibrated
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
        thresholds: Thresholds | None = None,
        weights: str | None = None,
    ) -> None:
        self.model_name = model_name
        # Which weights (the checkpoint's SHA-256 prefix): one model name may have many
        # checkpoints (trained, compressed), and caches of embeddings must tell them apart.
        self.weights = weights
        self.embedder = embedder
        self.detector = detector
        self.runtime = runtime
        self.max_pixels = max_pixels
        # Default: the committed table's (the released weights').
        self.thresholds = thresholds or model_thresholds(model_name)
        # Detection never looks at more than detector.max_side pixels, so decoding a large JPEG
        # at a reduced size down to that loses nothing it would use.
        self.decode_min_side = detector.max_side

    @classmethod
    def load(
        cls,
        model_name: str,
        checkpoint_dir: str | os.PathLike,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_face_size: int = MIN_FACE_SIZE,
        detect_max_side: int | None = DETECT_MAX_SIDE,
        runtime: str = "auto",
        onnx_dir: str | os.PathLike | None = None,
        threads: int = 1,
    ) -> "Verifier":
        """Load the weights (raising ``CheckpointError`` with advice) and the MTCNN detector.

        ``runtime`` "auto" serves with ONNX Runtime when it is installed (see
        ``verification.runtime``; its files are cached in ``onnx_dir``, by default the user's
        cache folder), else PyTorch; ``threads`` is each network's thread count. The default
        thresholds are those beside the checkpoint when that folder has a table for the model
        (``verification.thresholds.model_thresholds``).
        """
        thresholds = model_thresholds(model_name, checkpoint_dir)
        onnx_dir = onnx_dir or environment.default_onnx_dir()
        engines = load_engines(model_name, checkpoint_dir, runtime, onnx_dir, threads)
        detector = FaceDetector(
            min_face_size=min_face_size, max_side=detect_max_side, nets=engines.mtcnn
        )
        weights = file_sha256(checkpoint_path(model_name, checkpoint_dir))[:16]
        return cls(
            model_name,
            engines.embedder,
            detector,
            max_pixels,
            engines.runtime,
            thresholds,
            weights,
        )

    def decode(
        self, source: ImageSource, field: str = "image", timings: Timings | None = None
    ) -> Photo:
        with timed(timings, "decode"):
            try:
                pixels, scale = load_image_reduced(source, self.max_pixels, self.decode_min_side)
            except InputError as exc:
                raise exc.with_field(field) from None
            return Photo(pixels, scale)

    def detect(
        self, image: np.ndarray, timings: Timings | None = None, largest_only: bool = False
    ) -> list[DetectedFace]:
        with timed(timings, "detect"):
            return self.detector.detect(image, largest_only=largest_only)

    def embed(self, crops: Sequence[np.ndarray], timings: Timings | None = None) -> np.ndarray:
        with timed(timings, "embed"):
            return embed_crops(self.embedder, crops)

    def faces_in(
        self,
        source: ImageSource,
        field: str = "image",
        face: FaceChoice = "largest",
        max_faces: int = 1,
        fallback: bool = False,
        timings: Timings | None = None,
    ) -> ImageFaces:
        """Decode, detect, choose and align the faces of one image.

        ``max_faces`` 1 chooses one face by ``face``: the largest box, or the one nearest the
        image centre; N > 1 the N largest, 0 every face, largest first. Without a face this
        raises ``NoFaceError``, or with ``fallback`` aligns the template on the image centre
        (for datasets such as LFW whose faces are centred).
        """
        photo = self.decode(source, field, timings)
        image = photo.pixels
        largest_only = max_faces == 1 and face == "largest"
        faces = self.detect(image, timings, largest_only=largest_only)
        with timed(timings, "align"):
            if not faces:
                if not fallback:
                    raise NoFaceError("no face found in the image", field)
                return ImageFaces((None,), (warp_face(image, fallback_landmarks(image.shape)),), 0)
            if max_faces == 1:
                chosen = [select_face(faces, face, image.shape[:2])]
            else:
                chosen = faces if max_faces <= 0 else faces[:max_faces]
            crops = tuple(warp_face(image, found.landmarks) for found in chosen)
        return ImageFaces(tuple(photo.to_original(f) for f in chosen), crops, len(faces))

    def embed_images(
        self,
        sources: Sequence[ImageSource],
        fields: Sequence[str],
        face: FaceChoice = "largest",
        max_faces: int = 1,
        fallback: bool = False,
        timings: Timings | None = None,
    ) -> list[list[FaceEmbedding]]:
        """The chosen faces of every image (``faces_in``), all embedded in a single batch."""
        images = [
            self.faces_in(source, name, face, max_faces, fallback, timings)
            for source, name in zip(sources, fields, strict=True)
        ]
        embeddings = iter(self.embed([crop for faces in images for crop in faces.crops], timings))
        return [
            [
                FaceEmbedding(found, crop, next(embeddings), faces.face_count)
                for found, crop in zip(faces.chosen, faces.crops, strict=True)
            ]
            for faces in images
        ]

    def represent_many(
        self,
        sources: Sequence[ImageSource],
        fields: Sequence[str] | None = None,
        face: FaceChoice = "largest",
        fallback: bool = False,
        timings: Timings | None = None,
    ) -> list[FaceEmbedding]:
        """One face per image, all embedded in a single batch."""
        fields = fields or [f"image{i + 1}" for i in range(len(sources))]
        embedded = self.embed_images(sources, fields, face, 1, fallback, timings)
        return [faces[0] for faces in embedded]

    def embed_faces(
        self,
        source: ImageSource,
        field: str = "image",
        max_faces: int = 1,
        timings: Timings | None = None,
    ) -> list[FaceEmbedding]:
        """Every face in one image, largest first, at most ``max_faces`` of them (0: all)."""
        return self.embed_images([source], [field], "largest", max_faces, timings=timings)[0]

    def operating_point(
        self, metric: str, threshold: float | None = None, far: float | None = None
    ) -> OperatingPoint:
        """The caller's ``threshold``; else the calibrated one at false-match rate ``far`` (one
        of ``FARS``); else the calibrated best-accuracy threshold with its measured FAR."""
        given = given_threshold(threshold, far)
        if given is not None:
            return given
        if far is not None:
            calibrated = calibrated_far(far)
            at_far = self.thresholds.at_far(metric, calibrated)
            if at_far is None:
                raise NoThresholdError(
                    f"model {self.model_name} has no {metric} threshold calibrated at FAR "
                    f"{calibrated:g}; calibrate it with python -m evaluation.calibrate",
                    "far",
                )
            return OperatingPoint(at_far, calibrated)
        calibrated = self.thresholds.threshold(metric)
        if calibrated is None:
            raise NoThresholdError(
                f"model {self.model_name} has no calibrated {metric} threshold; pass one, or "
                f"calibrate it with python -m evaluation.calibrate",
                "threshold",
            )
        return OperatingPoint(calibrated, self.thresholds.far(metric))

    def verify(
        self,
        image1: ImageSource,
        image2: ImageSource,
        metric: str = "cosine",
        threshold: float | None = None,
        face: FaceChoice = "largest",
        far: float | None = None,
    ) -> Verification:
        """Decide whether two images show the same person (``distance <= threshold``).

        The threshold is ``threshold``, else the calibrated one at ``far``, else the calibrated
        default (``operating_point``). ``timings`` of the result holds the seconds spent per
        stage (decode, detect, align, embed), summed over both images.
        """
        check_metric(metric)
        point = self.operating_point(metric, threshold, far)
        timings: Timings = {}
        first, second = self.represent_many(
            [image1, image2], ["image1", "image2"], face, timings=timings
        )
        dist = float(pairwise_distances(first.embedding, second.embedding, metric)[0])
        return Verification(
            distance=dist,
            threshold=point.threshold,
            far=point.far,
            match=dist <= point.threshold,
            metric=metric,
            model=self.model_name,
            faces=(first, second),
            timings=timings,
        )
