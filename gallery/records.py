"""The gallery's records, the rules every backend applies before writing, and the parts of
search both backends share."""

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from gallery.errors import (
    InvalidCursorError,
    InvalidMetadataError,
    InvalidSubjectIdError,
    LowQualityError,
)

EMBEDDING_SIZE = 512
MAX_METADATA_BYTES = 4096
MAX_TOP_K = 100
# Letters and digits of any script, space, _ - . @; never "/" or "\", so an id can never name
# a path, and none of SQL's quotes (SQL only ever sees ids as bound parameters anyway).
_SUBJECT_ID = re.compile(r"[\w .@-]{1,128}")
SUBJECT_ID_RULE = "1-128 characters: letters, digits, space, _ - . @ (no leading or trailing space)"


@dataclass(frozen=True)
class Face:
    id: str
    subject: str
    model: str
    checkpoint_sha256: str
    box: tuple[float, float, float, float]
    score: float
    image_sha256: str
    created: str


@dataclass(frozen=True)
class Subject:
    id: str
    metadata: dict[str, Any]
    created: str
    updated: str
    face_count: int
    faces: tuple[Face, ...] = field(default=())  # only from ``Gallery.get_subject``


@dataclass(frozen=True)
class Match:
    """A subject and its face closest to the probe (cosine distance)."""

    subject: str
    distance: float
    face_id: str


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_subject_id(subject_id: object, field: str = "subject") -> str:
    if (
        not isinstance(subject_id, str)
        or not _SUBJECT_ID.fullmatch(subject_id)
        or subject_id != subject_id.strip(" ")
    ):
        raise InvalidSubjectIdError(f"a subject id is {SUBJECT_ID_RULE}", field)
    return subject_id


def metadata_text(metadata: object, field: str = "metadata") -> str:
    """``metadata`` as compact JSON; refuses anything but an object of at most 4 KB."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidMetadataError("metadata must be a JSON object", field)
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidMetadataError(f"metadata is not JSON ({exc})", field) from None
    size = len(text.encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadataError(
            f"metadata has {size} bytes as JSON, over the limit of {MAX_METADATA_BYTES}", field
        )
    return text


def check_quality(
    box: Sequence[float], score: float, min_face_size: float, min_score: float
) -> None:
    """Refuse a face whose box (original-image pixels) is smaller than ``min_face_size`` on its
    short side, or whose detection score is below ``min_score``: such faces make weak
    references that later match strangers."""
    x1, y1, x2, y2 = box
    short_side = min(x2 - x1, y2 - y1)
    if short_side < min_face_size:
        raise LowQualityError(
            f"the face is {short_side:.0f} px on its short side, under the minimum of "
            f"{min_face_size:g} px; use a larger or closer photo",
            "image",
        )
    if score < min_score:
        raise LowQualityError(
            f"the face was detected with score {score:.3f}, under the minimum of {min_score:g}",
            "image",
        )


def unit_vectors(embeddings: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """(n, 512) float32 rows of length 1 (a single vector becomes one row)."""
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != EMBEDDING_SIZE:
        raise ValueError(f"embeddings must be (n, {EMBEDDING_SIZE}), not {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("embeddings must be finite and non-zero")
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def check_top_k(top_k: int) -> int:
    if not 1 <= top_k <= MAX_TOP_K:
        raise ValueError(f"top_k must be 1..{MAX_TOP_K}, not {top_k}")
    return top_k


def encode_cursor(subject_id: str) -> str:
    return base64.urlsafe_b64encode(subject_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError("not a cursor this gallery handed out", "cursor") from None


def closest_subjects(
    distances: np.ndarray, face_ids: Sequence[str], subjects: Sequence[str], top_k: int
) -> list[Match]:
    """The ``top_k`` subjects closest to one probe, each with its closest face, from the
    distances to every face: a subject never appears twice, however many faces it has.

    Only the nearest faces are sorted (``argpartition``), widening the window until it holds
    ``top_k`` different subjects or every face.
    """
    count = len(distances)
    window = min(count, 4 * top_k)
    while True:
        if window < count:
            nearest = np.argpartition(distances, window - 1)[:window]
        else:
            nearest = np.arange(count)
        nearest = nearest[np.argsort(distances[nearest], kind="stable")]
        matches: dict[str, Match] = {}
        for row in nearest:
            subject = subjects[row]
            if subject not in matches:
                matches[subject] = Match(subject, float(distances[row]), face_ids[row])
                if len(matches) == top_k:
                    return list(matches.values())
        if window >= count:
            return list(matches.values())
        window = min(count, window * 4)
