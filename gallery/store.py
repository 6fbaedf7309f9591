"""``Gallery``: subjects and their enrolled faces, bound to one model's weights, and search
among them. Two backends: ``gallery.sqlite`` (one file, exact search in memory) and
``gallery.postgres`` (pgvector, shared by many service replicas). Both apply the rules of
``gallery.records`` here, before anything is written.
"""

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from gallery.errors import BindingError, GalleryError, SubjectExistsError
from gallery.records import (
    Face,
    Match,
    Subject,
    check_subject_id,
    check_top_k,
    decode_cursor,
    encode_cursor,
    metadata_text,
    now,
    unit_vectors,
)

SCHEMA_VERSION = 1
EXPORT_FORMAT = "edgeface-gallery"
# PostgreSQL's hnsw.ef_search: 40 finds the exact search's top subject for every probe of a 100k
# gallery of face-like embeddings (README, "Gallery benchmark"); random directions need 100.
DEFAULT_EF_SEARCH = 40


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Gallery(ABC):
    """Subjects and faces of one model's weights (``model``, ``checkpoint_sha256``).

    Thread-safe. Errors about the caller's input are ``InputError`` subclasses naming the
    field (``gallery.errors``).
    """

    def __init__(self, url: str, model: str, checkpoint_sha256: str) -> None:
        self.url = redacted(url)
        self.model = model
        self.checkpoint_sha256 = checkpoint_sha256

    @staticmethod
    def open(
        url: str, model: str, checkpoint_sha256: str, ef_search: int = DEFAULT_EF_SEARCH
    ) -> "Gallery":
        """Open (creating when missing) the gallery at ``url``: ``sqlite:///PATH`` (three
        slashes and a relative path, four for an absolute one) or ``postgresql://...``.

        Raises ``BindingError`` when it holds faces of another model or other weights, and
        ``SchemaVersionError`` when it was written by a newer version of this code.
        """
        if url.startswith("sqlite:///"):
            from gallery.sqlite import SqliteGallery

            return SqliteGallery(url, model, checkpoint_sha256)
        if url.startswith(("postgresql://", "postgres://")):
            from gallery.postgres import PostgresGallery

            return PostgresGallery(url, model, checkpoint_sha256, ef_search)
        raise GalleryError(
            f"gallery URL {redacted(url)!r} is neither sqlite:///PATH nor postgresql://..."
        )

    def check_binding(self) -> None:
        other = self._other_binding()
        if other is not None:
            model, sha = other
            raise BindingError(
                f"the gallery at {self.url} holds faces of model {model} (checkpoint sha256 "
                f"{sha}), but this service runs {self.model} (checkpoint sha256 "
                f"{self.checkpoint_sha256}); their embeddings are not comparable. Serve "
                f"{model} with those weights, use another gallery, or re-enroll the faces"
            )

    # Subjects.

    def create_subject(self, subject_id: str, metadata: dict | None = None) -> Subject:
        check_subject_id(subject_id)
        text = metadata_text(metadata)
        stamp = now()
        self._create_subject(subject_id, text, stamp)
        return Subject(subject_id, json.loads(text), stamp, stamp, 0)

    def get_subject(self, subject_id: str) -> Subject:
        """The subject with its faces (no embeddings); ``SubjectNotFoundError`` if none."""
        return self._get_subject(check_subject_id(subject_id))

    def list_subjects(
        self, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Subject], str | None]:
        """Up to ``limit`` subjects in id order after ``cursor``, and the cursor of the next
        page (None on the last page)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        page = self._list_subjects(decode_cursor(cursor), limit + 1)
        if len(page) > limit:
            return page[:limit], encode_cursor(page[limit - 1].id)
        return page, None

    def update_subject(self, subject_id: str, metadata: dict) -> Subject:
        """Replace the subject's metadata."""
        check_subject_id(subject_id)
        self._update_subject(subject_id, metadata_text(metadata), now())
        return self.get_subject(subject_id)

    def delete_subject(self, subject_id: str) -> None:
        """Delete the subject and all its faces, embeddings included."""
        self._delete_subject(check_subject_id(subject_id))

    # Faces.

    def add_face(
        self,
        subject_id: str,
        embedding: np.ndarray | Sequence[float],
        box: Sequence[float],
        score: float,
        image_sha256: str,
        create_subject: bool = False,
    ) -> Face:
        """Enroll one face. ``SubjectNotFoundError`` unless the subject exists or
        ``create_subject``; ``DuplicateFaceError`` (naming the face) when the same image bytes
        are enrolled for this subject already."""
        check_subject_id(subject_id)
        face = Face(
            id=uuid.uuid4().hex,
            subject=subject_id,
            model=self.model,
            checkpoint_sha256=self.checkpoint_sha256,
            box=tuple(round(float(v), 2) for v in box),
            score=round(float(score), 5),
            image_sha256=image_sha256,
            created=now(),
        )
        self._add_face(face, unit_vectors(embedding)[0], create_subject)
        return face

    def delete_face(self, subject_id: str, face_id: str) -> None:
        self._delete_face(check_subject_id(subject_id), face_id)

    # Search.

    def identify(self, embeddings: np.ndarray, top_k: int = 5) -> list[list[Match]]:
        """Per probe embedding, the ``top_k`` closest subjects (cosine distance), each once,
        with its closest face."""
        return self._identify(unit_vectors(embeddings), check_top_k(top_k))

    def verify(self, subject_id: str, embedding: np.ndarray) -> Match:
        """The subject's face closest to ``embedding``; ``SubjectNotFoundError`` if the
        subject does not exist, ``FaceNotFoundError`` if it has no face."""
        return self._verify(check_subject_id(subject_id), unit_vectors(embedding)[0])

    # Backup and moving between backends.

    def export_jsonl(self, out: IO[str]) -> int:
        """Write the gallery as JSON lines (a header with the model binding, then every
        subject followed by its faces with embeddings); returns the number of faces."""
        header = {
            "type": EXPORT_FORMAT,
            "schema": SCHEMA_VERSION,
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
        }
        out.write(json.dumps(header) + "\n")
        faces = 0
        for subject in self.all_subjects():
            record = {
                "type": "subject",
                "id": subject.id,
                "metadata": subject.metadata,
                "created": subject.created,
                "updated": subject.updated,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            for face, embedding in self._subject_faces(subject.id):
                record = {"type": "face", **face.__dict__, "box": list(face.box)}
                record["embedding"] = [float(str(v)) for v in embedding]  # exact float32
                out.write(json.dumps(record) + "\n")
                faces += 1
        return faces

    def import_jsonl(self, lines: Iterable[str]) -> tuple[int, int]:
        """Add what ``export_jsonl`` wrote (subjects that exist keep theirs; faces whose id
        exists are skipped); refuses faces of another model or other weights. Returns
        (subjects created, faces added)."""
        records = iter(lines)
        header = json.loads(next(records, "{}") or "{}")
        if header.get("type") != EXPORT_FORMAT:
            raise GalleryError("not a gallery export: the first line is not its header")
        subjects = faces = 0
        for line in records:
            if not line.strip():
                continue
            record: dict[str, Any] = json.loads(line)
            if record["type"] == "subject":
                check_subject_id(record["id"])
                text = metadata_text(record["metadata"])
                try:
                    self._create_subject(record["id"], text, record["created"], record["updated"])
                    subjects += 1
                except SubjectExistsError:
                    pass
            elif record["type"] == "face":
                binding = (record["model"], record["checkpoint_sha256"])
                if binding != (self.model, self.checkpoint_sha256):
                    raise BindingError(
                        f"face {record['id']} was enrolled with model {binding[0]} (checkpoint "
                        f"sha256 {binding[1]}), but this gallery is bound to {self.model} "
                        f"(checkpoint sha256 {self.checkpoint_sha256})"
                    )
                embedding = unit_vectors(record.pop("embedding"))[0]
                del record["type"]
                face = Face(**{**record, "box": tuple(record["box"])})
                check_subject_id(face.subject)
                faces += self._import_face(face, embedding)
        return subjects, faces

    def all_subjects(self) -> Iterator[Subject]:
        """Every subject, in id order (page by page)."""
        cursor = None
        while True:
            page, cursor = self.list_subjects(500, cursor)
            yield from page
            if cursor is None:
                return

    @abstractmethod
    def face_count(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _other_binding(self) -> tuple[str, str] | None:
        """(model, checkpoint sha256) of a face enrolled with other weights, if any."""

    @abstractmethod
    def _create_subject(
        self, subject_id: str, metadata: str, created: str, updated: str | None = None
    ) -> None: ...

    @abstractmethod
    def _get_subject(self, subject_id: str) -> Subject: ...

    @abstractmethod
    def _list_subjects(self, after: str | None, limit: int) -> list[Subject]: ...

    @abstractmethod
    def _update_subject(self, subject_id: str, metadata: str, updated: str) -> None: ...

    @abstractmethod
    def _delete_subject(self, subject_id: str) -> None: ...

    @abstractmethod
    def _add_face(self, face: Face, embedding: np.ndarray, create_subject: bool) -> None: ...

    @abstractmethod
    def _import_face(self, face: Face, embedding: np.ndarray) -> bool:
        """Insert ``face`` unless its id exists; True if inserted."""

    @abstractmethod
    def _delete_face(self, subject_id: str, face_id: str) -> None: ...

    @abstractmethod
    def _subject_faces(self, subject_id: str) -> list[tuple[Face, np.ndarray]]: ...

    @abstractmethod
    def _identify(self, probes: np.ndarray, top_k: int) -> list[list[Match]]: ...

    @abstractmethod
    def _verify(self, subject_id: str, probe: np.ndarray) -> Match: ...
