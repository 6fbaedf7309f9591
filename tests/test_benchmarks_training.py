"""python -m benchmarks.training --quick runs end to end and writes every field (not timed)."""

import json
import subprocess
import sys

from tests.server import REPO


def test_quick_training_benchmark_writes_every_field(tmp_path):
    path = tmp_path / "training.json"
    command = [sys.executable, "-m", "benchmarks.training", "--quick", "--json", str(path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(path.read_text())
    assert report["meta"]["quick"] is True and "--quick" in report["meta"]["command"]
    heads = report["throughput"]["heads"]
    assert set(heads) == {
        "plain_linear_ce", "cosface", "arcface", "sphereface", "combined", "partial_fc_0.1",
        "triplet",
    }  # fmt: skip
    assert heads["plain_linear_ce"]["ratio_to_plain"] == 1.0
    for row in heads.values():
        assert row["images_per_s"] > 0 and row["ratio_to_plain"] > 0
        assert isinstance(row["within_limit"], bool) and len(row["round_ratios"]) == 1
        assert row["cpu_ratio_to_plain"] > 0 and len(row["cpu_round_ratios"]) == 1
        assert isinstance(row["cpu_within_limit"], bool)
    scale = report["partial_fc"]
    assert set(scale["runs"]) == {"0.1", "1.0"}
    assert scale["runs"]["0.1"]["centres_used"] == 1000
    assert scale["runs"]["1.0"]["centres_used"] == 10_000
    for run in scale["runs"].values():
        assert run["step_ms_median"] > 0 and run["added_peak_mb"] >= 0
    assert scale["step_time_ratio_0.1_to_full"] > 0
    assert "images/s" in done.stdout and "Partial FC alone" in done.stdout
