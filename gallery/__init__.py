"""A face gallery (1:N): subjects, their enrolled faces, and search among them.

``Gallery.open(url, model, checkpoint_sha256)`` opens SQLite (``sqlite:///PATH``) or PostgreSQL
with pgvector (``postgresql://...``). The gallery knows nothing of HTTP or images: it stores
embeddings computed elsewhere (``verification``) and answers searches over them.
"""

from gallery.errors import (
    BindingError,
    DuplicateFaceError,
    FaceNotFoundError,
    GalleryError,
    InvalidCursorError,
    InvalidMetadataError,
    InvalidSubjectIdError,
    LowQualityError,
    SchemaVersionError,
    SubjectExistsError,
    SubjectNotFoundError,
)
from gallery.records import Face, Match, Subject, check_quality
from gallery.store import Gallery

__all__ = [
    "BindingError",
    "DuplicateFaceError",
    "Face",
    "FaceNotFoundError",
    "Gallery",
    "GalleryError",
    "InvalidCursorError",
    "InvalidMetadataError",
    "InvalidSubjectIdError",
    "LowQualityError",
    "Match",
    "SchemaVersionError",
    "Subject",
    "SubjectExistsError",
    "SubjectNotFoundError",
    "check_quality",
]
