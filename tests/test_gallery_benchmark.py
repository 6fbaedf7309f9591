"""benchmarks.gallery's quick mode runs end to end on both backends and writes every figure
(shape and sanity only, never speed: the machine is shared)."""

import json
import os
import subprocess
import sys

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
