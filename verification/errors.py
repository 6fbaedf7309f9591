"""Errors about what a caller sent. Each names the input (``field``) it is about."""


class InputError(ValueError):
    """Base class: the request is wrong, not the service."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple:
        # Rebuilt from (field, message), so the error crosses a process boundary intact.
        return (type(self), (self.field, self.message))


class InvalidImageError(InputError):
    """Not an image, empty or truncated."""


class ImageTooLargeError(InputError):
    """More bytes or pixels than the configured limits."""


class NoFaceError(InputError):
    """The detector found no face in the image."""


class UnknownMetricError(InputError):
    """The metric name is not one of ``METRICS``."""


class NoThresholdError(InputError):
    """No calibrated threshold exists for this model and metric, and none was given."""
