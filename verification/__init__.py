"""Face verification: embeddings, distances, calibrated thresholds and the pipeline."""

from verification.answers import embedding_answer, verification_answer
from verification.distances import METRICS, Metric, distance, l2_normalize, pairwise_distances
from verification.errors import (
    ImageTooLargeError,
    InputError,
    InvalidImageError,
    NoFaceError,
    NoThresholdError,
    UnknownMetricError,
)
from verification.pipeline import (
    DEFAULT_MODEL,
    PIPELINE_VERSION,
    FaceEmbedding,
    Timings,
    Verification,
    Verifier,
)
from verification.thresholds import accuracy_at, best_threshold, default_threshold

__all__ = [
    "DEFAULT_MODEL",
    "METRICS",
    "PIPELINE_VERSION",
    "FaceEmbedding",
    "ImageTooLargeError",
    "InputError",
    "InvalidImageError",
    "Metric",
    "NoFaceError",
    "NoThresholdError",
    "Timings",
    "UnknownMetricError",
    "Verification",
    "Verifier",
    "accuracy_at",
    "best_threshold",
    "default_threshold",
    "distance",
    "embedding_answer",
    "l2_normalize",
    "pairwise_distances",
    "verification_answer",
]
