"""What can go wrong with a gallery.

The ``InputError`` subclasses are about what a caller sent (the service maps each to its HTTP
status in ``service.errors``); ``GalleryError`` and its subclasses are about the gallery itself
and stop the service from starting, with a sentence for the operator.
"""

from face_alignment.errors import InputError


class SubjectNotFoundError(InputError):
    """No subject has this id."""


class FaceNotFoundError(InputError):
    """The subject has no face with this id."""


class SubjectExistsError(InputError):
    """A subject with this id exists already."""


class DuplicateFaceError(InputError):
    """The same image bytes are enrolled for this subject already."""

    def __init__(self, message: str, field: str | None = None, face_id: str = "") -> None:
        super().__init__(message, field)
        self.face_id = face_id

    def with_field(self, field: str) -> "DuplicateFaceError":
        return type(self)(self.message, field, self.face_id)

    def __reduce__(self) -> tuple:
        return (type(self), (self.message, self.field, self.face_id))


class InvalidSubjectIdError(InputError):
    """A subject id outside the allowed characters or length."""


class InvalidMetadataError(InputError):
    """Metadata that is not a JSON object, or larger than the limit."""


class InvalidCursorError(InputError):
    """A pagination cursor this gallery did not hand out."""


class LowQualityError(InputError):
    """A face too small or detected with too low a score to enroll."""


class GalleryError(RuntimeError):
    """The gallery cannot be used: a sentence for the operator."""


class BindingError(GalleryError):
    """The gallery holds faces of another model or other weights."""


class SchemaVersionError(GalleryError):
    """The gallery's schema is newer than this code."""
