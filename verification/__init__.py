"""Face verification: embeddings, distances, calibrated thresholds and the pipeline."""

from verification.answers import embedding_answer, verification_answer
from verification.distances import METRICS, Metric, pairwise_distances
from verification.errors import (
    ImageTooLargeError,
    InputError,
    InvalidImageError,
    NoFaceError,
    NoThresholdError,
    ThresholdOptionError,
    UnknownMetricError,
)
from verification.pipeline import (
    PIPELINE_VERSION,
    Timings,
    Verification,
    Verifier,
)
from verification.thresholds import accuracy_at, best_threshold, default_threshold

__all__ = [
    "METRICS",
    "PIPELINE_VERSION",
    "ImageTooLargeError",
    "InputError",
    "InvalidImageError",
    "Metric",
    "NoFaceError",
    "NoThresholdError",
    "ThresholdOptionError",
    "Timings",
    "UnknownMetricError",
    "Verification",
    "Verifier",
    "accuracy_at",
    "best_threshold",
    "default_threshold",
    "embedding_answer",
    "pairwise_distances",
    "verification_answer",
]
