"""Errors of the pipeline about what a caller sent. The base class and the image errors are
``face_alignment.errors``' (decoding raises them); each names the input (``field``) it is about."""

from face_alignment.errors import ImageError, ImageTooLargeError, InputError, InvalidImageError

__all__ = [
    "ImageError",
    "ImageTooLargeError",
    "InputError",
    "InvalidImageError",
    "NoFaceError",
    "NoThresholdError",
    "ThresholdOptionError",
    "UnknownMetricError",
]


class NoFaceError(InputError):
    """The detector found no face in the image."""


class UnknownMetricError(InputError):
    """The metric name is not one of ``METRICS``."""


class NoThresholdError(InputError):
    """No calibrated threshold exists for this model and metric, and none was given."""


class ThresholdOptionError(InputError):
    """``far`` is not a calibrated rate, or it was given together with ``threshold``."""
