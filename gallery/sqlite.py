"""The embedded gallery: one SQLite file, and exact cosine search over an in-memory float32
matrix of every enrolled embedding, loaded when the gallery opens and changed in the same
locked step as every write.

For one server process: another process writing the same file would leave this one's matrix
stale (several replicas share a PostgreSQL gallery instead).
"""

import json
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gallery.errors import (
    DuplicateFaceError,
    FaceNotFoundError,
    GalleryError,
    SchemaVersionError,
    SubjectExistsError,
    SubjectNotFoundError,
)
from gallery.records import EMBEDDING_SIZE, Face, Match, Subject, closest_subjects
from gallery.store import SCHEMA_VERSION, Gallery

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    id TEXT PRIMARY KEY,
    metadata TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    model TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,
    box TEXT NOT NULL,
    score REAL NOT NULL,
    image_sha256 TEXT NOT NULL,
    created TEXT NOT NULL,
    UNIQUE (subject, image_sha256)
);
"""
FACE_COLUMNS = "id, subject, model, checkpoint_sha256, box, score, image_sha256, created"


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def face_from_row(row: tuple) -> Face:
    face_id, subject, model, sha, box, score, image_sha, created = row
    return Face(face_id, subject, model, sha, tuple(json.loads(box)), score, image_sha, created)


class FaceMatrix:
    """Every embedding as a row of one float32 matrix (capacity doubling; a deleted row is
    replaced by the last one), with the face id and subject of each row."""

    def __init__(self) -> None:
        self.vectors = np.empty((0, EMBEDDING_SIZE), dtype=np.float32)
        self.count = 0
        self.face_ids: list[str] = []
        self.subjects: list[str] = []
        self.rows: dict[str, int] = {}
        self.by_subject: dict[str, set[str]] = defaultdict(set)

    def load(self, face_ids: list[str], subjects: list[str], vectors: np.ndarray) -> None:
        self.vectors, self.count = vectors, len(face_ids)
        self.face_ids, self.subjects = face_ids, subjects
        self.rows = {face_id: row for row, face_id in enumerate(face_ids)}
        for face_id, subject in zip(face_ids, subjects, strict=True):
            self.by_subject[subject].add(face_id)

    def add(self, face_id: str, subject: str, vector: np.ndarray) -> None:
        if self.count == len(self.vectors):
            grown = np.empty((max(1024, 2 * self.count), EMBEDDING_SIZE), dtype=np.float32)
            grown[: self.count] = self.vectors[: self.count]
            self.vectors = grown
        self.vectors[self.count] = vector
        self.face_ids.append(face_id)
        self.subjects.append(subject)
        self.rows[face_id] = self.count
        self.by_subject[subject].add(face_id)
        self.count += 1

    def remove(self, face_id: str) -> None:
        row = self.rows.pop(face_id, None)
        if row is None:
            return
        self.by_subject[self.subjects[row]].discard(face_id)
        last = self.count - 1
        if row != last:
            self.vectors[row] = self.vectors[last]
            self.face_ids[row], self.subjects[row] = self.face_ids[last], self.subjects[last]
            self.rows[self.face_ids[row]] = row
        self.face_ids.pop()
        self.subjects.pop()
        self.count = last

    def remove_subject(self, subject: str) -> None:
        for face_id in list(self.by_subject.pop(subject, ())):
            self.remove(face_id)

    def distances(self, probes: np.ndarray) -> np.ndarray:
        """Cosine distances (n_probes, count) of unit probes to every row."""
        return 1.0 - probes @ self.vectors[: self.count].T


class SqliteGallery(Gallery):
    def __init__(self, url: str, model: str, checkpoint_sha256: str) -> None:
        super().__init__(url, model, checkpoint_sha256)
        self.path = sqlite_path(url)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            raise GalleryError(f"cannot open the gallery file {self.path}: {exc}") from None
        # WAL: readers never wait for the writer; synchronous NORMAL keeps every committed
        # transaction through a crash of this process (FULL would add one fsync per commit,
        # for power loss). secure_delete overwrites deleted rows, so an erased embedding does
        # not linger in free pages.
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "secure_delete=ON"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._check_schema()
        self.check_binding()
        self.matrix = FaceMatrix()
        self._load_matrix()

    def _check_schema(self) -> None:
        with self._write() as db:
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the gallery {self.path} has schema version {row[0]}, newer than this "
                    f"code's {SCHEMA_VERSION}: upgrade EdgeFace to use it"
                )

    def _load_matrix(self) -> None:
        # Row by row into one preallocated array: the embeddings are held once, not also as a
        # list of blobs and their concatenation (300 MB more at 100k faces).
        count = self._db.execute("SELECT count(*) FROM faces").fetchone()[0]
        vectors = np.empty((count, EMBEDDING_SIZE), dtype=np.float32)
        face_ids, subjects = [], []
        query = "SELECT id, subject, embedding FROM faces"
        for row, (face_id, subject, blob) in enumerate(self._db.execute(query)):
            vectors[row] = np.frombuffer(blob, dtype="<f4")
            face_ids.append(face_id)
            subjects.append(subject)
        self.matrix.load(face_ids, subjects, vectors)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _erase(self) -> None:
        # The deleted rows' old pages are still frames of the write-ahead log; copying the log
        # into the database and truncating it leaves only the overwritten pages.
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _exists(self, subject_id: str) -> bool:
        query = "SELECT 1 FROM subjects WHERE id = ?"
        return self._db.execute(query, (subject_id,)).fetchone() is not None

    def face_count(self) -> int:
        with self._lock:
            return self.matrix.count

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _other_binding(self) -> tuple[str, str] | None:
        query = (
            "SELECT model, checkpoint_sha256 FROM faces "
            "WHERE model <> ? OR checkpoint_sha256 <> ? LIMIT 1"
        )
        return self._db.execute(query, (self.model, self.checkpoint_sha256)).fetchone()

    def _create_subject(
        self, subject_id: str, metadata: str, created: str, updated: str | None = None
    ) -> None:
        with self._write() as db:
            if self._exists(subject_id):
                raise SubjectExistsError(f"subject {subject_id!r} exists already", "subject")
            query = "INSERT INTO subjects VALUES (?, ?, ?, ?)"
            db.execute(query, (subject_id, metadata, created, updated or created))

    def _get_subject(self, subject_id: str) -> Subject:
        with self._lock:
            row = self._db.execute(
                "SELECT id, metadata, created, updated FROM subjects WHERE id = ?", (subject_id,)
            ).fetchone()
            if row is None:
                raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")
            faces = self._db.execute(
                f"SELECT {FACE_COLUMNS} FROM faces WHERE subject = ? ORDER BY created, id",
                (subject_id,),
            ).fetchall()
        found = tuple(face_from_row(f) for f in faces)
        return Subject(row[0], json.loads(row[1]), row[2], row[3], len(found), found)

    def _list_subjects(self, after: str | None, limit: int) -> list[Subject]:
        query = (
            "SELECT s.id, s.metadata, s.created, s.updated, "
            "(SELECT count(*) FROM faces f WHERE f.subject = s.id) "
            "FROM subjects s WHERE ? IS NULL OR s.id > ? ORDER BY s.id LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(query, (after, after, limit)).fetchall()
        return [Subject(r[0], json.loads(r[1]), r[2], r[3], r[4]) for r in rows]

    def _update_subject(self, subject_id: str, metadata: str, updated: str) -> None:
        with self._write() as db:
            query = "UPDATE subjects SET metadata = ?, updated = ? WHERE id = ?"
            if db.execute(query, (metadata, updated, subject_id)).rowcount == 0:
                raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")

    def _delete_subject(self, subject_id: str) -> None:
        with self._lock:
            with self._write() as db:
                if db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,)).rowcount == 0:
                    raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")
            self.matrix.remove_subject(subject_id)
            self._erase()

    def _insert_face(self, db: sqlite3.Connection, face: Face, embedding: np.ndarray) -> None:
        db.execute(
            f"INSERT INTO faces ({FACE_COLUMNS}, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                face.id,
                face.subject,
                face.model,
                face.checkpoint_sha256,
                json.dumps(face.box),
                face.score,
                face.image_sha256,
                face.created,
                embedding.astype("<f4").tobytes(),
            ),
        )

    def _add_face(self, face: Face, embedding: np.ndarray, create_subject: bool) -> None:
        # The matrix changes after the commit, under the same lock: no search sees a face that
        # is not stored, and none misses one that is.
        with self._lock:
            with self._write() as db:
                if not self._exists(face.subject):
                    if not create_subject:
                        raise SubjectNotFoundError(f"no subject {face.subject!r}", "subject")
                    query = "INSERT INTO subjects VALUES (?, '{}', ?, ?)"
                    db.execute(query, (face.subject, face.created, face.created))
                existing = db.execute(
                    "SELECT id FROM faces WHERE subject = ? AND image_sha256 = ?",
                    (face.subject, face.image_sha256),
                ).fetchone()
                if existing is not None:
                    raise DuplicateFaceError(
                        f"these image bytes are enrolled for {face.subject!r} already, as face "
                        f"{existing[0]}",
                        "image",
                        existing[0],
                    )
                self._insert_face(db, face, embedding)
                query = "UPDATE subjects SET updated = ? WHERE id = ?"
                db.execute(query, (face.created, face.subject))
            self.matrix.add(face.id, face.subject, embedding)

    def _import_face(self, face: Face, embedding: np.ndarray) -> bool:
        with self._lock:
            with self._write() as db:
                if db.execute("SELECT 1 FROM faces WHERE id = ?", (face.id,)).fetchone():
                    return False
                if not self._exists(face.subject):
                    raise SubjectNotFoundError(f"no subject {face.subject!r}", "subject")
                self._insert_face(db, face, embedding)
            self.matrix.add(face.id, face.subject, embedding)
            return True

    def _delete_face(self, subject_id: str, face_id: str) -> None:
        with self._lock:
            with self._write() as db:
                query = "DELETE FROM faces WHERE id = ? AND subject = ?"
                if db.execute(query, (face_id, subject_id)).rowcount == 0:
                    if not self._exists(subject_id):
                        raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")
                    raise FaceNotFoundError(
                        f"subject {subject_id!r} has no face {face_id!r}", "face_id"
                    )
            self.matrix.remove(face_id)
            self._erase()

    def _subject_faces(self, subject_id: str) -> list[tuple[Face, np.ndarray]]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {FACE_COLUMNS}, embedding FROM faces WHERE subject = ? "
                "ORDER BY created, id",
                (subject_id,),
            ).fetchall()
        return [(face_from_row(r[:8]), np.frombuffer(r[8], dtype="<f4")) for r in rows]

    def _identify(self, probes: np.ndarray, top_k: int) -> list[list[Match]]:
        with self._lock:
            if self.matrix.count == 0:
                return [[] for _ in probes]
            distances = self.matrix.distances(probes)
            return [
                closest_subjects(d, self.matrix.face_ids, self.matrix.subjects, top_k)
                for d in distances
            ]

    def _verify(self, subject_id: str, probe: np.ndarray) -> Match:
        with self._lock:
            if not self._exists(subject_id):
                raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")
            rows = [self.matrix.rows[f] for f in sorted(self.matrix.by_subject.get(subject_id, ()))]
            if not rows:
                raise FaceNotFoundError(f"subject {subject_id!r} has no enrolled face", "subject")
            distances = 1.0 - self.matrix.vectors[rows] @ probe
            best = int(np.argmin(distances))
            return Match(subject_id, float(distances[best]), self.matrix.face_ids[rows[best]])
