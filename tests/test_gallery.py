"""The gallery library on both backends (SQLite file, real PostgreSQL with pgvector), with
real embeddings of real photos and synthetic unit vectors for the search checks."""

import hashlib
import io
import sqlite3

import numpy as np
import psycopg
import pytest

from gallery import (
    BindingError,
    DuplicateFaceError,
    FaceNotFoundError,
    Gallery,
    GalleryError,
    InvalidCursorError,
    InvalidMetadataError,
    InvalidSubjectIdError,
    LowQualityError,
    SchemaVersionError,
    SubjectExistsError,
    SubjectNotFoundError,
    check_quality,
)
from gallery.records import unit_vectors
from tests.postgres import fresh_database

MODEL, SHA = "edgeface_s_gamma_05", "a" * 64
# One person in four photos (tests/photos README), and people all different from each other.
SAME_PERSON = ["002_3a2ef5df", "011_7b37bf1f", "013_46b35530", "025_c55c4e11"]
OTHERS = ["002_331d0423", "002_6749a2c4", "005_02ab3a1b", "005_8af3cada", "005_9574c208"]


@pytest.fixture(scope="module")
def photo_faces(verifier, photos_dir) -> dict[str, tuple[np.ndarray, list[float], float, str]]:
    """name -> (unit embedding, box, score, sha256 of the file) of the largest face."""
    faces = {}
    for name in SAME_PERSON + OTHERS:
        data = (photos_dir / f"{name}.jpg").read_bytes()
        found = verifier.embed_faces(data)[0]
        faces[name] = (
            found.unit_embedding,
            list(found.face.box),
            float(found.face.score),
            hashlib.sha256(data).hexdigest(),
        )
    return faces


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gallery.db"
    return fresh_database(request.getfixturevalue("postgres"))


@pytest.fixture
def gallery(url):
    opened = Gallery.open(url, MODEL, SHA)
    yield opened
    opened.close()


def enroll(gallery: Gallery, subject: str, face: tuple, create: bool = True):
    embedding, box, score, sha = face
    return gallery.add_face(subject, embedding, box, score, sha, create_subject=create)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 512)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_subject_crud_and_pagination(gallery):
    created = gallery.create_subject("alice", {"team": "blue"})
    assert created.metadata == {"team": "blue"} and created.face_count == 0
    with pytest.raises(SubjectExistsError) as exc:
        gallery.create_subject("alice")
    assert exc.value.field == "subject"
    for name in ["bob", "carol", "dave", "eve"]:
        gallery.create_subject(name)
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = gallery.list_subjects(limit=2, cursor=cursor)
        seen += [s.id for s in page]
        pages += 1
        if cursor is None:
            break
    assert seen == ["alice", "bob", "carol", "dave", "eve"] and pages == 3
    with pytest.raises(InvalidCursorError):
        gallery.list_subjects(cursor="%%%")
    updated = gallery.update_subject("alice", {"team": "red", "floor": 3})
    assert updated.metadata == {"team": "red", "floor": 3} and updated.updated >= created.updated
    gallery.delete_subject("bob")
    with pytest.raises(SubjectNotFoundError):
        gallery.get_subject("bob")
    with pytest.raises(SubjectNotFoundError):
        gallery.delete_subject("bob")
    with pytest.raises(SubjectNotFoundError):
        gallery.update_subject("bob", {})


@pytest.mark.parametrize("bad", ["", " alice", "a/b", "../etc/passwd", "x" * 129, "a\\b", "é'"])
def test_invalid_subject_ids_are_refused(gallery, bad):
    with pytest.raises(InvalidSubjectIdError) as exc:
        gallery.create_subject(bad)
    assert exc.value.field == "subject"


def test_metadata_must_be_a_small_object(gallery):
    with pytest.raises(InvalidMetadataError):
        gallery.create_subject("a", ["not", "an", "object"])
    with pytest.raises(InvalidMetadataError, match="4096"):
        gallery.create_subject("a", {"note": "x" * 4100})
    gallery.create_subject("a", {"note": "é" * 2000})  # 4 KB of UTF-8 counts bytes: ok
    with pytest.raises(InvalidMetadataError):
        gallery.update_subject("a", {"note": "é" * 2100})


def test_ids_shaped_like_injection_are_stored_literally(gallery, photo_faces):
    literal = ["x OR 1 --", "Robert DROP TABLE subjects", "..", ".", "José Ñúñez@mail.example"]
    for name in literal:
        gallery.create_subject(name, {"id": name})
    enroll(gallery, "Robert DROP TABLE subjects", photo_faces[OTHERS[0]], create=False)
    for name in literal:
        assert gallery.get_subject(name).metadata == {"id": name}
    page, _ = gallery.list_subjects(limit=100)
    assert sorted(s.id for s in page) == sorted(literal)
    for bad in ["x' OR '1'='1", "a; DROP TABLE faces; --", '"quoted"']:
        with pytest.raises(InvalidSubjectIdError):
            gallery.get_subject(bad)
    assert gallery.face_count() == 1


def test_faces_duplicates_and_deletion(gallery, photo_faces):
    with pytest.raises(SubjectNotFoundError):
        enroll(gallery, "alice", photo_faces[SAME_PERSON[0]], create=False)
    first = enroll(gallery, "alice", photo_faces[SAME_PERSON[0]])
    assert first.model == MODEL and first.checkpoint_sha256 == SHA
    with pytest.raises(DuplicateFaceError) as exc:
        enroll(gallery, "alice", photo_faces[SAME_PERSON[0]])
    assert exc.value.face_id == first.id and first.id in str(exc.value)
    enroll(gallery, "bob", photo_faces[SAME_PERSON[0]])  # same bytes, another subject: allowed
    second = enroll(gallery, "alice", photo_faces[SAME_PERSON[1]])
    subject = gallery.get_subject("alice")
    assert subject.face_count == 2 and {f.id for f in subject.faces} == {first.id, second.id}
    gallery.delete_face("alice", first.id)
    with pytest.raises(FaceNotFoundError):
        gallery.delete_face("alice", first.id)
    probe = photo_faces[SAME_PERSON[0]][0]
    [matches] = gallery.identify(probe[None], top_k=5)
    assert all(m.face_id != first.id for m in matches)
    assert gallery.verify("alice", probe).face_id == second.id
    gallery.delete_subject("alice")
    [matches] = gallery.identify(probe[None], top_k=5)
    assert [m.subject for m in matches] == ["bob"]
    with pytest.raises(SubjectNotFoundError):
        gallery.verify("alice", probe)


def test_identify_ranks_subjects_once_each(gallery, photo_faces):
    face_names = {enroll(gallery, "person", photo_faces[n]).id: n for n in SAME_PERSON[:3]}
    for name in OTHERS:
        enroll(gallery, name, photo_faces[name])
    probe = photo_faces[SAME_PERSON[3]][0]
    [matches] = gallery.identify(probe[None], top_k=4)
    subjects = [m.subject for m in matches]
    assert subjects[0] == "person" and len(subjects) == len(set(subjects)) == 4
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    # The subject's distance is its closest face's, and that face is named.
    distances = {fid: 1 - float(photo_faces[n][0] @ probe) for fid, n in face_names.items()}
    best = min(distances, key=distances.get)
    assert matches[0].face_id == best
    assert matches[0].distance == pytest.approx(distances[best], abs=1e-5)
    assert gallery.verify("person", probe).face_id == best
    # A same-person probe is far closer than any other subject.
    assert matches[0].distance < 0.59 < matches[1].distance


def test_search_equals_brute_force(gallery):
    rng = np.random.default_rng(0)
    vectors = unit(rng, 600)
    subjects = [f"s{i % 150}" for i in range(600)]  # four faces per subject
    for i, (vector, subject) in enumerate(zip(vectors, subjects, strict=True)):
        gallery.add_face(subject, vector, [0, 0, 100, 100], 0.99, f"{i}", create_subject=True)
    probes = vectors[:20] + 0.05 * unit(rng, 20)
    results = gallery.identify(probes, top_k=10)
    for probe, matches in zip(probes, results, strict=True):
        distances = 1 - vectors @ (probe / np.linalg.norm(probe))
        per_subject = {}
        for d, s in zip(distances, subjects, strict=True):
            per_subject[s] = min(per_subject.get(s, 2.0), float(d))
        expected = sorted(per_subject, key=per_subject.get)[:10]
        assert [m.subject for m in matches] == expected
        assert [m.distance for m in matches] == pytest.approx(
            [per_subject[s] for s in expected], abs=1e-5
        )


def test_postgres_lists_top_k_subjects_beyond_ef_search(postgres):
    """An HNSW scan alone stops at hnsw.ef_search rows; with the iterative scan the gallery
    turns on, identify still lists top_k subjects when top_k is larger, nearest first."""
    rng = np.random.default_rng(1)
    vectors = unit(rng, 300)
    gallery = Gallery.open(fresh_database(postgres), MODEL, SHA, ef_search=10)
    try:
        for i, vector in enumerate(vectors):
            gallery.add_face(f"s{i // 2}", vector, [0, 0, 100, 100], 0.99, f"{i}", True)
        [matches] = gallery.identify(vectors[7][None], top_k=100)
    finally:
        gallery.close()
    assert len(matches) == 100 and len({m.subject for m in matches}) == 100
    assert matches[0].subject == "s3" and matches[0].distance == pytest.approx(0, abs=1e-5)
    distances = [m.distance for m in matches]
    assert distances == sorted(distances)


def test_postgres_with_an_old_pgvector_is_a_clear_error(postgres):
    """pgvector before 0.8.0 has no iterative scan: opening says so and what to do, instead of
    failing on every pooled connection. (The installed version is rewritten in the catalogue:
    the server has only the current pgvector's files.)"""
    url = fresh_database(postgres)
    Gallery.open(url, MODEL, SHA).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE pg_extension SET extversion = '0.7.4' WHERE extname = 'vector'")
    with pytest.raises(
        GalleryError, match=r"pgvector 0\.7\.4; the gallery needs 0\.8\.0"
    ) as caught:
        Gallery.open(url, MODEL, SHA)
    assert "ALTER EXTENSION vector UPDATE" in str(caught.value)


def test_binding_to_model_and_weights(url, photo_faces):
    empty = Gallery.open(url, "edgeface_xs_q", "b" * 64)
    empty.close()  # no faces yet: any model may bind it
    gallery = Gallery.open(url, MODEL, SHA)
    enroll(gallery, "alice", photo_faces[SAME_PERSON[0]])
    gallery.close()
    for model, sha in [("edgeface_xs_q", SHA), (MODEL, "b" * 64)]:
        with pytest.raises(BindingError) as exc:
            Gallery.open(url, model, sha)
        message = str(exc.value)
        assert MODEL in message and SHA in message and model in message and sha in message
    Gallery.open(url, MODEL, SHA).close()


def test_newer_schema_version_is_refused(url):
    Gallery.open(url, MODEL, SHA).close()
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute("UPDATE schema_version SET version = 99")
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE gallery_schema_version SET version = 99")
    with pytest.raises(SchemaVersionError, match="99"):
        Gallery.open(url, MODEL, SHA)


def test_sqlite_survives_reopening(tmp_path, photo_faces):
    url = f"sqlite:///{tmp_path}/g.db"
    gallery = Gallery.open(url, MODEL, SHA)
    for name in OTHERS:
        enroll(gallery, name, photo_faces[name])
    gallery.delete_subject(OTHERS[1])
    probes = np.stack([photo_faces[n][0] for n in OTHERS])
    before = gallery.identify(probes, top_k=3)
    gallery.close()
    reopened = Gallery.open(url, MODEL, SHA)
    assert reopened.identify(probes, top_k=3) == before
    assert reopened.face_count() == len(OTHERS) - 1


def test_sqlite_erasure_overwrites_the_embedding_bytes(tmp_path, photo_faces):
    path = tmp_path / "g.db"
    gallery = Gallery.open(f"sqlite:///{path}", MODEL, SHA)
    enroll(gallery, "keep", photo_faces[OTHERS[0]])
    enroll(gallery, "erase", photo_faces[OTHERS[1]])
    erased, kept = (unit_vectors(photo_faces[n][0]).tobytes() for n in OTHERS[1::-1])

    def stored() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("g.db"))

    assert erased in stored()  # else the check below could not fail
    gallery.delete_subject("erase")
    assert erased not in stored()
    assert kept in stored()
    gallery.close()


def test_postgres_erasure_removes_rows(postgres, photo_faces):
    url = fresh_database(postgres)
    gallery = Gallery.open(url, MODEL, SHA)
    enroll(gallery, "erase", photo_faces[OTHERS[1]])
    gallery.delete_subject("erase")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM gallery_faces").fetchone()[0] == 0
    gallery.close()


def test_postgres_index_of_other_parameters_is_reported_and_rebuilt(postgres, caplog):
    # A gallery created before the index's build parameters changed keeps its index (CREATE
    # INDEX IF NOT EXISTS): opening it says so with the statements that rebuild it in place.
    from gallery.postgres import HNSW_EF_CONSTRUCTION, HNSW_M, REBUILD_INDEX

    url = fresh_database(postgres)
    gallery = Gallery.open(url, MODEL, SHA)
    assert gallery.index_outdated is None
    vectors = unit(np.random.default_rng(3), 20)
    for i, vector in enumerate(vectors):
        gallery.add_face(f"s{i}", vector, [0, 0, 50, 50], 1.0, str(i), create_subject=True)
    gallery.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX gallery_faces_embedding")
        conn.execute(
            "CREATE INDEX gallery_faces_embedding ON gallery_faces "
            "USING hnsw (embedding vector_cosine_ops)"
        )
    with caplog.at_level("WARNING", logger="edgeface.gallery"):
        old = Gallery.open(url, MODEL, SHA)
    assert "built with pgvector's defaults" in old.index_outdated
    assert all(statement in old.index_outdated for statement in REBUILD_INDEX)
    assert old.index_outdated in caplog.text
    assert old.identify(vectors[:1], 1)[0][0].subject == "s0"  # the old index still serves
    old.close()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in REBUILD_INDEX:
            conn.execute(statement)
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'gallery_faces_embedding'"
        ).fetchone()[0]
    assert sorted(options) == sorted([f"m={HNSW_M}", f"ef_construction={HNSW_EF_CONSTRUCTION}"])
    rebuilt = Gallery.open(url, MODEL, SHA)
    assert rebuilt.index_outdated is None
    found = rebuilt.identify(vectors, 1)
    assert [ms[0].subject for ms in found] == [f"s{i}" for i in range(20)]
    rebuilt.close()


@pytest.mark.parametrize("direction", ["sqlite->postgres", "postgres->sqlite"])
def test_export_import_round_trip(direction, tmp_path, postgres, photo_faces):
    urls = {"sqlite": f"sqlite:///{tmp_path}/g.db", "postgres": fresh_database(postgres)}
    source_kind, target_kind = direction.split("->")
    source = Gallery.open(urls[source_kind], MODEL, SHA)
    source.create_subject("empty", {"note": "no faces"})
    for name in SAME_PERSON[:2]:
        enroll(source, "person", photo_faces[name])
    for name in OTHERS:
        enroll(source, name, photo_faces[name])
    exported = io.StringIO()
    assert source.export_jsonl(exported) == 2 + len(OTHERS)
    target = Gallery.open(urls[target_kind], MODEL, SHA)
    assert target.import_jsonl(exported.getvalue().splitlines()) == (2 + len(OTHERS), 7)
    assert target.import_jsonl(exported.getvalue().splitlines()) == (0, 0)  # idempotent
    again = io.StringIO()
    target.export_jsonl(again)
    assert again.getvalue() == exported.getvalue()
    probes = np.stack([photo_faces[n][0] for n in SAME_PERSON + OTHERS])
    found, expected = target.identify(probes, 3), source.identify(probes, 3)
    assert [[(m.subject, m.face_id) for m in ms] for ms in found] == [
        [(m.subject, m.face_id) for m in ms] for ms in expected
    ]
    distances = [m.distance for ms in found for m in ms]
    assert distances == pytest.approx([m.distance for ms in expected for m in ms], abs=1e-6)
    other = Gallery.open(f"sqlite:///{tmp_path}/other.db", "edgeface_xs_q", SHA)
    with pytest.raises(BindingError):
        other.import_jsonl(exported.getvalue().splitlines())
    for opened in (source, target, other):
        opened.close()


def test_quality_rules():
    check_quality([0, 0, 40, 60], 0.95, 40, 0.9)
    with pytest.raises(LowQualityError, match="39 px"):
        check_quality([10, 10, 49, 80], 0.99, 40, 0.9)
    with pytest.raises(LowQualityError, match="score"):
        check_quality([0, 0, 100, 100], 0.5, 40, 0.9)


def test_postgres_without_the_extension_is_a_clear_error(postgres):
    # A role that may not create extensions meets the same refusal as a server without pgvector.
    url = fresh_database(postgres)
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS plain")
        conn.execute("CREATE ROLE plain LOGIN")
    plain = url.replace("postgres@", "plain@", 1)
    with pytest.raises(GalleryError, match="cannot create the pgvector extension") as exc:
        Gallery.open(plain, MODEL, SHA)
    assert "CREATE EXTENSION vector" in str(exc.value) and "Traceback" not in str(exc.value)
