"""The speed benchmark's quick mode runs end to end and writes complete, sane JSON.

It checks shape and sanity only, never speed: the machine is shared and timings are noisy.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SETS = ("portraits", "upscaled_2048", "office")
STAGES = ("decode", "detect", "align", "embed")
META = (
    "command",
    "date",
    "model",
    "quick",
    "torch_version",
    "torch_threads",
    "baseline_threads",
    "cpu_count",
    "python",
    "git_commit",
    "git_modified",
    "edgeface_env",
    "loadavg_start",
    "loadavg_end",
    "seconds",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory, checkpoint_dir, photos_dir) -> dict:
    path = tmp_path_factory.mktemp("benchmark") / "quick.json"
    env = {
        **os.environ,
        "EDGEFACE_CHECKPOINT_DIR": str(checkpoint_dir),
        "EDGEFACE_PHOTOS_DIR": str(photos_dir),
    }
    command = [sys.executable, "-m", "benchmarks.verify", "--quick", "--json", str(path)]
    # Generous: quick mode takes well under a minute on an idle machine, not on a busy one.
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "ratio" in done.stdout
    return json.loads(path.read_text())


def assert_latency(summary: dict) -> None:
    assert summary["n"] > 0
    assert 0 < summary["p50_ms"] <= summary["p95_ms"]
    assert summary["mean_ms"] > 0


def test_meta_records_the_run(results):
    meta = results["meta"]
    assert set(META) <= set(meta)
    assert meta["quick"] is True
    assert "--quick" in meta["command"]
    assert meta["torch_threads"] >= 1 and meta["cpu_count"] >= 1
    assert meta["seconds"] > 0


@pytest.mark.parametrize("name", SETS)
def test_library_set_has_both_pipelines_ratios_and_stages(results, name):
    measured = results["library"][name]
    assert measured["pairs"] >= 1
    assert_latency(measured["ours"])
    assert_latency(measured["baseline"])
    assert measured["ours"]["n"] == measured["baseline"]["n"] == measured["pairs"]
    assert all(measured["ratio"][key] > 0 for key in ("p50", "p95", "paired_median"))
    assert set(STAGES) <= set(measured["stages_p50_ms"])
    assert all(value > 0 for value in measured["stages_p50_ms"].values())
    assert 0 <= measured["match_agreement"] <= 1
    assert len(measured["samples_ms"]["ours"]) == len(measured["samples_ms"]["baseline"])


def test_face_recall_compares_group_photos(results):
    recall = results["face_recall"]
    assert recall["baseline_faces"] > 0
    assert 0 <= recall["found_by_ours"] <= recall["baseline_faces"]
    assert 0 <= recall["recall"] <= 1


def test_server_answers_every_request(results):
    server = results["server"]
    assert server["startup_s"] > 0 and server["import_s"] > 0
    assert server["peak_rss_mb"] > 50
    assert [level["clients"] for level in server["load"]] == [1, 4, 8]
    for level in server["load"]:
        assert level["failed"] == 0
        assert level["requests"] > 0 and level["rps"] > 0 and level["seconds"] > 0
        assert_latency(level["latency"])
    # One round in --quick: the ratio is that round's 8-client over 1-client throughput.
    assert server["rounds"] == 1
    one, eight = server["load"][0]["rps"], server["load"][-1]["rps"]
    assert server["throughput_ratio"] == pytest.approx(eight / one, rel=0.02, abs=0.01)
