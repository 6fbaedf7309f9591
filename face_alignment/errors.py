"""Errors about what a caller sent, from the lowest layer that can find them up to the HTTP
answer. Each can name the input (``field``) it is about; the service maps the classes to HTTP
statuses (``service.errors``), so every layer raises these and nothing translates them."""

from typing import Self


class InputError(ValueError):
    """Base class: the request is wrong, not the service."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def with_field(self, field: str) -> Self:
        """The same error about input ``field`` (image decoding does not know the field)."""
        return type(self)(self.message, field)

    def __reduce__(self) -> tuple:
        # Rebuilt from (message, field), so the error crosses a process boundary intact.
        return (type(self), (self.message, self.field))


class ImageError(InputError):
    """The input cannot be used as an image."""


class InvalidImageError(ImageError):
    """Not an image, empty, truncated or undecodable."""


class ImageTooLargeError(ImageError):
    """More bytes or pixels than the configured limits."""
