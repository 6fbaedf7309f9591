"""The shared gallery: PostgreSQL with pgvector. Embeddings are a ``vector(512)`` column with
an HNSW index on cosine distance; the search runs in SQL and aggregates the nearest faces by
subject, so several service replicas see one gallery, each write at once.
"""

import logging

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from gallery.errors import (
    BindingError,
    DuplicateFaceError,
    FaceNotFoundError,
    GalleryError,
    SchemaVersionError,
    SubjectExistsError,
    SubjectNotFoundError,
)
from gallery.records import Face, Match, Subject
from gallery.store import SCHEMA_VERSION, Gallery

log = logging.getLogger("edgeface.gallery")

# Replicas starting at once must not race to create the schema: one takes this lock first.
_SCHEMA_LOCK = 0x45_44_47_46  # "EDGF"
SCHEMA = """
CREATE TABLE IF NOT EXISTS gallery_schema_version (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS gallery_subjects (
    id text COLLATE "C" PRIMARY KEY,
    metadata jsonb NOT NULL,
    created text NOT NULL,
    updated text NOT NULL
);
CREATE TABLE IF NOT EXISTS gallery_faces (
    id text PRIMARY KEY,
    subject text COLLATE "C" NOT NULL REFERENCES gallery_subjects(id) ON DELETE CASCADE,
    embedding vector(512) NOT NULL,
    model text NOT NULL,
    checkpoint_sha256 text NOT NULL,
    box float8[] NOT NULL,
    score float8 NOT NULL,
    image_sha256 text NOT NULL,
    created text NOT NULL,
    UNIQUE (subject, image_sha256)
);
"""
# The HNSW graph's build parameters (pgvector's defaults are m 16, ef_construction 64): with more
# neighbours per node, built with a wider search, the index reaches a given recall at a smaller
# hnsw.ef_search (README, "Gallery benchmark"). Only a new index gets them: CREATE INDEX IF NOT
# EXISTS keeps an existing one as built, which opening the gallery reports (index_outdated).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
INDEX_OPTIONS = f"m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}"
CREATE_INDEX = (
    "CREATE INDEX IF NOT EXISTS gallery_faces_embedding ON gallery_faces "
    f"USING hnsw (embedding vector_cosine_ops) WITH ({INDEX_OPTIONS})"
)
# Rebuild an index of other parameters in place, without blocking searches or enrollment (it
# takes minutes per 100k faces; maintenance_work_mem must hold the graph): two statements, each
# on its own (REINDEX CONCURRENTLY refuses to run in a transaction, as in one psql -c string).
REBUILD_INDEX = (
    f"ALTER INDEX gallery_faces_embedding SET ({INDEX_OPTIONS})",
    "REINDEX INDEX CONCURRENTLY gallery_faces_embedding",
)
# hnsw.iterative_scan, which identify relies on, came with pgvector 0.8.0.
MIN_PGVECTOR = (0, 8, 0)


def pgvector_version(text: str) -> tuple[int, ...]:
    """``"0.8.6"`` -> ``(0, 8, 6)``; a part that is not a number counts as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))


FACE_COLUMNS = "id, subject, model, checkpoint_sha256, box, score, image_sha256, created"
# The top-k subjects, not the top-k faces: the nearest faces the index finds (a window of at
# least hnsw.ef_search), the closest face of each subject among them, then the k best; and how
# many faces the window held, so that a window of too few subjects can be widened.
IDENTIFY = """
WITH nearest AS MATERIALIZED (
    SELECT subject, id, embedding <=> %(probe)s AS distance
    FROM gallery_faces ORDER BY embedding <=> %(probe)s LIMIT %(window)s
)
SELECT subject, distance, id, (SELECT count(*) FROM nearest) FROM (
    SELECT DISTINCT ON (subject) subject, distance, id FROM nearest
    ORDER BY subject, distance, id
) AS best
ORDER BY distance, subject LIMIT %(top_k)s
"""


def face_from_row(row: tuple) -> Face:
    face_id, subject, model, sha, box, score, image_sha, created = row
    return Face(face_id, subject, model, sha, tuple(box), score, image_sha, created)


class PostgresGallery(Gallery):
    def __init__(
        self, url: str, model: str, checkpoint_sha256: str, ef_search: int, pool_size: int = 8
    ) -> None:
        super().__init__(url, model, checkpoint_sha256)
        self.ef_search = ef_search
        self._create_schema(url)

        def configure(conn: psycopg.Connection) -> None:
            register_vector(conn)
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef_search),))
            # An HNSW scan stops at ef_search rows unless it may go on: identify asks for as many
            # faces as top_k subjects need, whatever ef_search is. The query sorts what it gets.
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', false)")

        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=configure,
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=30)
        except psycopg.Error as exc:
            raise GalleryError(f"cannot connect to the gallery at {self.url}: {exc}") from None
        try:
            self.check_binding()
        except BindingError:
            self._pool.close()
            raise

    def _create_schema(self, url: str) -> None:
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=30)
        except psycopg.Error as exc:
            raise GalleryError(f"cannot connect to the gallery at {self.url}: {exc}") from None
        with conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.Error as exc:
                detail = " ".join(str(exc).split()).rstrip(".")  # one line, without HINT's "\n"
                raise GalleryError(
                    f"the PostgreSQL server of {self.url} cannot create the pgvector extension "
                    f"('vector'): {detail}. Install pgvector on the server "
                    "(https://github.com/pgvector/pgvector) or have an administrator run "
                    "CREATE EXTENSION vector in this database"
                ) from None
            query = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            installed = conn.execute(query).fetchone()[0]
            if pgvector_version(installed) < MIN_PGVECTOR:
                wanted = ".".join(map(str, MIN_PGVECTOR))
                raise GalleryError(
                    f"the PostgreSQL server of {self.url} has pgvector {installed}; the gallery "
                    f"needs {wanted} or newer (iterative HNSW scans): install it on the server, "
                    "then run ALTER EXTENSION vector UPDATE in this database"
                )
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(SCHEMA)
                conn.execute(CREATE_INDEX)
                version = conn.execute(
                    "SELECT max(version) FROM gallery_schema_version"
                ).fetchone()[0]
                if version is None:
                    query = "INSERT INTO gallery_schema_version VALUES (%s)"
                    conn.execute(query, (SCHEMA_VERSION,))
                elif version > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"the gallery at {self.url} has schema version {version}, newer than "
                        f"this code's {SCHEMA_VERSION}: upgrade EdgeFace to use it"
                    )
            query = "SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)"
            built = conn.execute(f"SELECT ({query})", ("gallery_faces_embedding",)).fetchone()[0]
        self.index_outdated = self._index_outdated(built)
        if self.index_outdated:
            log.warning("%s", self.index_outdated)

    def _index_outdated(self, built: list[str] | None) -> str | None:
        """A sentence for the operator when the HNSW index has other build parameters than
        CREATE_INDEX's (it predates them), else None."""
        wanted = {"m": str(HNSW_M), "ef_construction": str(HNSW_EF_CONSTRUCTION)}
        options = dict(option.split("=", 1) for option in built or [])
        if options == wanted:
            return None
        described = ", ".join(f"{k} {v}" for k, v in options.items()) or "pgvector's defaults"
        return (
            f"the HNSW index of the gallery at {self.url} was built with {described}, not "
            f"m {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}: at hnsw.ef_search "
            f"{self.ef_search} it finds fewer of the true nearest faces than README's figures. "
            "Rebuild it (minutes per 100k faces; searches and enrollment go on) with "
            f"{REBUILD_INDEX[0]}; then {REBUILD_INDEX[1]};"
        )

    def _fetch(self, query: str, params: tuple | dict = ()) -> list[tuple]:
        with self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def face_count(self) -> int:
        return self._fetch("SELECT count(*) FROM gallery_faces")[0][0]

    def close(self) -> None:
        self._pool.close()

    def _other_binding(self) -> tuple[str, str] | None:
        rows = self._fetch(
            "SELECT model, checkpoint_sha256 FROM gallery_faces "
            "WHERE model <> %s OR checkpoint_sha256 <> %s LIMIT 1",
            (self.model, self.checkpoint_sha256),
        )
        return rows[0] if rows else None

    def _create_subject(
        self, subject_id: str, metadata: str, created: str, updated: str | None = None
    ) -> None:
        rows = self._fetch(
            "INSERT INTO gallery_subjects VALUES (%s, %s::jsonb, %s, %s) "
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            (subject_id, metadata, created, updated or created),
        )
        if not rows:
            raise SubjectExistsError(f"subject {subject_id!r} exists already", "subject")

    def _get_subject(self, subject_id: str) -> Subject:
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT id, metadata, created, updated FROM gallery_subjects WHERE id = %s",
                (subject_id,),
            ).fetchone()
            if row is None:
                raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")
            faces = conn.execute(
                f"SELECT {FACE_COLUMNS} FROM gallery_faces WHERE subject = %s ORDER BY created, id",
                (subject_id,),
            ).fetchall()
        found = tuple(face_from_row(f) for f in faces)
        return Subject(row[0], row[1], row[2], row[3], len(found), found)

    def _list_subjects(self, after: str | None, limit: int) -> list[Subject]:
        rows = self._fetch(
            "SELECT s.id, s.metadata, s.created, s.updated, "
            "(SELECT count(*) FROM gallery_faces f WHERE f.subject = s.id) "
            "FROM gallery_subjects s WHERE %(after)s::text IS NULL OR s.id > %(after)s "
            "ORDER BY s.id LIMIT %(limit)s",
            {"after": after, "limit": limit},
        )
        return [Subject(*row) for row in rows]

    def _update_subject(self, subject_id: str, metadata: str, updated: str) -> None:
        rows = self._fetch(
            "UPDATE gallery_subjects SET metadata = %s::jsonb, updated = %s WHERE id = %s "
            "RETURNING id",
            (metadata, updated, subject_id),
        )
        if not rows:
            raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")

    def _delete_subject(self, subject_id: str) -> None:
        rows = self._fetch("DELETE FROM gallery_subjects WHERE id = %s RETURNING id", (subject_id,))
        if not rows:
            raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")

    @staticmethod
    def _insert_face(conn: psycopg.Connection, face: Face, embedding: np.ndarray) -> bool:
        """Insert unless the subject has these image bytes already; True if inserted."""
        row = conn.execute(
            f"INSERT INTO gallery_faces ({FACE_COLUMNS}, embedding) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING id",
            (
                face.id,
                face.subject,
                face.model,
                face.checkpoint_sha256,
                list(face.box),
                face.score,
                face.image_sha256,
                face.created,
                embedding,
            ),
        ).fetchone()
        return row is not None

    def _add_face(self, face: Face, embedding: np.ndarray, create_subject: bool) -> None:
        with self._pool.connection() as conn, conn.transaction():
            if create_subject:
                conn.execute(
                    "INSERT INTO gallery_subjects VALUES (%s, '{}', %s, %s) "
                    "ON CONFLICT (id) DO NOTHING",
                    (face.subject, face.created, face.created),
                )
            # Locks the subject row: a concurrent delete of the subject waits for this insert.
            query = "UPDATE gallery_subjects SET updated = %s WHERE id = %s RETURNING id"
            if conn.execute(query, (face.created, face.subject)).fetchone() is None:
                raise SubjectNotFoundError(f"no subject {face.subject!r}", "subject")
            if not self._insert_face(conn, face, embedding):
                existing = conn.execute(
                    "SELECT id FROM gallery_faces WHERE subject = %s AND image_sha256 = %s",
                    (face.subject, face.image_sha256),
                ).fetchone()
                raise DuplicateFaceError(
                    f"these image bytes are enrolled for {face.subject!r} already, as face "
                    f"{existing[0]}",
                    "image",
                    existing[0],
                )

    def _import_face(self, face: Face, embedding: np.ndarray) -> bool:
        with self._pool.connection() as conn, conn.transaction():
            query = "SELECT 1 FROM gallery_subjects WHERE id = %s"
            if conn.execute(query, (face.subject,)).fetchone() is None:
                raise SubjectNotFoundError(f"no subject {face.subject!r}", "subject")
            return self._insert_face(conn, face, embedding)

    def _delete_face(self, subject_id: str, face_id: str) -> None:
        with self._pool.connection() as conn, conn.transaction():
            query = "DELETE FROM gallery_faces WHERE id = %s AND subject = %s RETURNING id"
            if conn.execute(query, (face_id, subject_id)).fetchone() is None:
                query = "SELECT 1 FROM gallery_subjects WHERE id = %s"
                if conn.execute(query, (subject_id,)).fetchone() is None:
                    raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")
                message = f"subject {subject_id!r} has no face {face_id!r}"
                raise FaceNotFoundError(message, "face_id")

    def _subject_faces(self, subject_id: str) -> list[tuple[Face, np.ndarray]]:
        rows = self._fetch(
            f"SELECT {FACE_COLUMNS}, embedding FROM gallery_faces WHERE subject = %s "
            "ORDER BY created, id",
            (subject_id,),
        )
        return [(face_from_row(r[:8]), r[8].to_numpy().astype(np.float32)) for r in rows]

    def _identify(self, probes: np.ndarray, top_k: int) -> list[list[Match]]:
        with self._pool.connection() as conn:
            return [self._nearest_subjects(conn, probe, top_k) for probe in probes]

    def _nearest_subjects(
        self, conn: psycopg.Connection, probe: np.ndarray, top_k: int
    ) -> list[Match]:
        window = max(self.ef_search, top_k)
        while True:
            rows = conn.execute(
                IDENTIFY, {"probe": probe, "window": window, "top_k": top_k}
            ).fetchall()
            # Subjects with several faces near the probe can fill the window: look further,
            # unless the scan already returned every face it could.
            if len(rows) == top_k or not rows or rows[0][3] < window:
                return [
                    Match(subject, float(distance), face_id)
                    for subject, distance, face_id, _ in rows
                ]
            window *= 4

    def _verify(self, subject_id: str, probe: np.ndarray) -> Match:
        # No ORDER BY on the distance: the planner could answer it from the HNSW index, which
        # filters after its approximate scan and may miss the subject's faces.
        with self._pool.connection() as conn, conn.transaction():
            query = "SELECT 1 FROM gallery_subjects WHERE id = %s"
            if conn.execute(query, (subject_id,)).fetchone() is None:
                raise SubjectNotFoundError(f"no subject {subject_id!r}", "subject")
            rows = conn.execute(
                "SELECT id, embedding <=> %s FROM gallery_faces WHERE subject = %s",
                (probe, subject_id),
            ).fetchall()
        if not rows:
            raise FaceNotFoundError(f"subject {subject_id!r} has no enrolled face", "subject")
        face_id, distance = min(rows, key=lambda r: (r[1], r[0]))
        return Match(subject_id, float(distance), face_id)
