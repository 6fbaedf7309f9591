"""The load test (benchmarks.load), briefly: its own server, 8 clients x 10 requests.

It checks robustness, never speed: no failed connection, nothing >= 500, every bad input its
documented status and code, and the server's RSS measured before and after.
"""

import json

import pytest

from benchmarks import load


@pytest.fixture(scope="module")
def run(tmp_path_factory, checkpoint_dir, photos_dir) -> tuple[int, dict]:
    path = tmp_path_factory.mktemp("load") / "load.json"
    # The ONNX Runtime server's RSS settles after some 500 requests of this mix (allocator and
    # ONNX Runtime arenas growing to the largest shapes seen); warming up that long costs about
    # 4 s and leaves the check to real growth.
    argv = ["--clients", "8", "--requests", "25", "--warmup", "480", "--json", str(path)]
    argv += ["--checkpoint-dir", str(checkpoint_dir), "--photos-dir", str(photos_dir)]
    argv += ["--time-cap", "600"]
    status = load.main(argv)
    return status, json.loads(path.read_text())


def test_every_request_was_sent_and_answered(run):
    status, report = run
    totals = report["totals"]
    assert report["config"]["time_capped"] is False
    assert totals["requests"] == 8 * 25
    assert totals["failed_connections"] == 0
    assert totals["server_errors"] == 0
    assert report["failures"] == [] and status == 0, report["failures"]


@pytest.mark.parametrize("kind", list(load.KINDS))
def test_each_kind_got_its_documented_status(run, kind):
    _, report = run
    tally = report["kinds"][kind]
    assert tally["sent"] > 0
    assert tally["as_documented"] == tally["sent"], tally["unexpected_samples"]
    assert tally["statuses"] == {str(load.KINDS[kind].status): tally["sent"]}
    assert 0 < tally["latency"]["p50_ms"] <= tally["latency"]["p95_ms"]


def test_oversize_was_built_for_the_limit_the_server_ran_with(run):
    _, report = run
    assert report["config"]["server_started_here"] is True
    assert report["config"]["max_upload_bytes"] == load.OWN_SERVER_MAX_UPLOAD_BYTES


def test_server_memory_was_measured_and_is_stable(run):
    _, report = run
    rss = report["rss"]
    assert 0 < rss["after_warmup_mb"] <= rss["peak_mb"]
    assert 0 < rss["after_run_mb"] <= rss["peak_mb"]
    assert rss["ratio"] == pytest.approx(rss["after_run_mb"] / rss["after_warmup_mb"], abs=1e-3)
    assert abs(rss["ratio"] - 1) <= load.RSS_TOLERANCE


def report_with(**changes) -> dict:
    """A passing report, then ``changes`` applied to its totals, kinds and rss."""
    kinds = {
        name: {"sent": 2, "unexpected": 0, "expected_status": kind.status, "expected_code": None}
        for name, kind in load.KINDS.items()
    }
    report = {
        "config": {"server_pid": 1},
        "totals": {"failed_connections": 0, "server_errors": 0},
        "kinds": kinds,
        "rss": {"ratio": 1.05, "tolerance": load.RSS_TOLERANCE},
    }
    for section, values in changes.items():
        for key, value in values.items():
            if isinstance(value, dict):
                report[section][key].update(value)
            else:
                report[section][key] = value
    return report


def test_the_verdict_passes_a_clean_run():
    assert load.expectation_failures(report_with()) == []


@pytest.mark.parametrize(
    "changes,expected",
    [
        ({"totals": {"failed_connections": 3}}, "3 failed connections"),
        ({"totals": {"server_errors": 1}}, "1 responses with status >= 500"),
        ({"kinds": {"oversize": {"unexpected": 1}}}, "oversize: 1 of 2 not 413"),
        ({"rss": {"ratio": 1.31}}, "1.31x RSS after the warm-up"),
        ({"rss": {"ratio": None}}, "server RSS was not measured"),
    ],
)
def test_the_verdict_names_each_missed_expectation(changes, expected):
    failures = load.expectation_failures(report_with(**changes))
    assert len(failures) == 1 and expected in failures[0], failures
