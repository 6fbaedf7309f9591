"""benchmarks.gallery's quick mode runs end to end on both backends and writes every figure
(shape and sanity only, never speed: the machine is shared)."""

import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.gallery import FaceModel, fit_face_model, median_distances, unit
from gallery.postgres import HNSW_EF_CONSTRUCTION, HNSW_M
from gallery.store import DEFAULT_EF_SEARCH
from tests.server import REPO


def test_quick_mode_fields(tmp_path, checkpoint_dir, photos_dir, postgres):
    path = tmp_path / "gallery.json"
    command = [sys.executable, "-m", "benchmarks.gallery", "--quick", "--probes", "10"]
    command += ["--postgres", postgres, "--json", str(path)]
    env = {**os.environ, "EDGEFACE_CHECKPOINT_DIR": str(checkpoint_dir)}
    env["EDGEFACE_PHOTOS_DIR"] = str(photos_dir)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(path.read_text())
    assert report["real_faces"] >= 8 and report["probes"] == 10
    for backend in ("enrollment_sqlite", "enrollment_postgres"):
        assert report[backend]["end_to_end_per_s"] > 0 and report[backend]["store_only_per_s"] > 0
    [size] = report["sizes"]
    assert size["faces"] == 1000 and size["subjects"] == 500
    sqlite, pg = size["sqlite"], size["postgres"]
    for figures in (sqlite, pg):
        assert figures["search"]["n"] == 10 and figures["end_to_end"]["n"] == 3
        assert 0 < figures["search"]["p50_ms"] <= figures["search"]["p95_ms"]
        assert figures["end_to_end"]["p50_ms"] > figures["search"]["p50_ms"] * 0.5
        assert figures["startup_s"] > 0
    assert sqlite["memory_mb_per_100k"] > 0
    assert 0.9 <= pg["recall_at_1"] <= 1.0 and pg["index_build_s"] > 0
    assert pg["ef_search"] == DEFAULT_EF_SEARCH and pg["server_cpu_ms_per_search"] >= 0
    setup = size["postgres_setup"]
    assert sorted(setup["index_options"]) == [
        f"ef_construction={HNSW_EF_CONSTRUCTION}",
        f"m={HNSW_M}",
    ]


def test_face_model_fit_reproduces_the_distances_of_its_data():
    """fit_face_model on faces drawn from a known model gives a model whose faces have the same
    same-person and different-person distances (the spread of people's means is corrected for
    each mean's own noise, and people with one image are left out)."""
    rng = np.random.default_rng(0)
    truth = FaceModel(
        mean=unit(rng.standard_normal((1, 512)))[0] * 0.6,
        between=rng.standard_normal((512, 48)) * 0.0035,
        within=rng.standard_normal((512, 64)) * 0.0033,
    )
    centres = truth.centres(600, rng)
    faces = truth.faces(np.repeat(centres, 3, axis=0), rng)
    people = np.repeat(np.arange(600), 3).astype(str)
    singles = unit(rng.standard_normal((50, 512)))  # not of the model: must not count
    fitted = fit_face_model(
        np.concatenate([faces, singles]), [*people, *(f"single{i}" for i in range(50))]
    )
    subjects = np.arange(4000) // 2
    expected = median_distances(
        truth.faces(np.repeat(truth.centres(2000, rng), 2, 0), rng), subjects, rng
    )
    got = median_distances(
        fitted.faces(np.repeat(fitted.centres(2000, rng), 2, 0), rng), subjects, rng
    )
    assert 0.2 < expected["same"] < expected["different"] - 0.2  # a face-like model
    assert abs(got["same"] - expected["same"]) < 0.015
    assert abs(got["different"] - expected["different"]) < 0.015
