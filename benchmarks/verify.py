"""How fast is a verify? ``python -m benchmarks.verify [--json PATH] [--quick] [--threads N]``

In one run, on this machine: the library's ``Verifier.verify`` against the frozen baseline
(``benchmarks.baseline``) on three image sets, pair by pair in alternating order, with our
per-stage times; then the real server (``python api.py`` on a loopback port): startup time, load
at 1, 4 and 8 concurrent clients, peak RSS. Prints a table and writes JSON. ``ratio`` (ours /
baseline, same run, same pairs) is the figure speed work is judged by; absolute times on a shared
machine are noisy.
"""

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

import environment
from backbones.catalog import DEFAULT_MODEL
from benchmarks.baseline import BASELINE_METRIC, BaselinePipeline, BaselineResult
from benchmarks.recall import face_recall
from benchmarks.server import measure_server
from benchmarks.sets import (
    ImageSet,
    Pair,
    build_sets,
    checkpoint_dir,
    office_paths,
)
from benchmarks.stats import ratio, summarize
from environment import REPO, photos_dir
from verification import Verification, Verifier, default_threshold
from verification.runtime import RUNTIMES

STAGES = ("decode", "detect", "align", "embed")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def progress(message: str) -> None:
    print(f"[benchmark] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """How much to measure: pairs per set, untimed warm-up pairs, requests per client count."""

    portrait_pairs: int
    upscaled_pairs: int
    office_pairs: int
    warmup_pairs: int
    server_requests: int
    server_time_cap_s: float
    server_rounds: int = 1
    concurrency: tuple[int, ...] = (1, 4, 8)


FULL = Plan(
    portrait_pairs=42,
    upscaled_pairs=24,
    office_pairs=20,
    warmup_pairs=2,
    server_requests=240,
    server_time_cap_s=90.0,
    server_rounds=4,
)
QUICK = Plan(
    portrait_pairs=3,
    upscaled_pairs=1,  # the baseline takes ~3.5 s per 2048-px pair
    office_pairs=1,
    warmup_pairs=1,
    server_requests=8,
    server_time_cap_s=10.0,
)


@dataclass(frozen=True)
class PairSample:
    ours_s: float
    baseline_s: float
    timings: dict[str, float]
    agree: bool


def time_ours(verifier: Verifier, pair: Pair) -> tuple[float, Verification]:
    start = time.perf_counter()
    result = verifier.verify(*pair)
    return time.perf_counter() - start, result


def time_baseline(baseline: BaselinePipeline, pair: Pair) -> tuple[float, BaselineResult]:
    start = time.perf_counter()
    result = baseline.verify(*pair)
    return time.perf_counter() - start, result


def measure_pair(
    verifier: Verifier, baseline: BaselinePipeline, pair: Pair, ours_first: bool
) -> PairSample:
    if ours_first:
        ours_s, ours = time_ours(verifier, pair)
        baseline_s, reference = time_baseline(baseline, pair)
    else:
        baseline_s, reference = time_baseline(baseline, pair)
        ours_s, ours = time_ours(verifier, pair)
    return PairSample(ours_s, baseline_s, dict(ours.timings), ours.match == reference.match)


def stage_names(samples: Sequence[PairSample]) -> list[str]:
    """The four known stages in order, then any other stage the pipeline reports."""
    seen = {name for sample in samples for name in sample.timings}
    return [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))


def measure_set(
    verifier: Verifier, baseline: BaselinePipeline, image_set: ImageSet, warmup: int
) -> dict:
    """Both pipelines on every pair of the set, alternating which goes first (ABBA), so that
    background load and cache effects hit both alike."""
    for pair in image_set.pairs[:warmup]:
        verifier.verify(*pair)
        baseline.verify(*pair)
    samples = [
        measure_pair(verifier, baseline, pair, ours_first=index % 2 == 0)
        for index, pair in enumerate(image_set.pairs)
    ]
    progress(f"{image_set.name}: {len(samples)} pairs measured")
    ours = summarize([s.ours_s for s in samples])
    reference = summarize([s.baseline_s for s in samples])
    stages = {
        name: summarize([s.timings.get(name, 0.0) for s in samples])["p50_ms"]
        for name in stage_names(samples)
    }
    return {
        "description": image_set.description,
        "pairs": len(samples),
        "ours": ours,
        "baseline": reference,
        "ratio": {
            "p50": ratio(ours["p50_ms"], reference["p50_ms"]),
            "p95": ratio(ours["p95_ms"], reference["p95_ms"]),
            # Each pair's two runs are back to back, so their quotient cancels slow load drift.
            "paired_median": round(float(np.median([s.ours_s / s.baseline_s for s in samples])), 3),
        },
        "stages_p50_ms": stages,
        "samples_ms": {
            "ours": [round(s.ours_s * 1000.0, 2) for s in samples],
            "baseline": [round(s.baseline_s * 1000.0, 2) for s in samples],
        },
        "match_agreement": round(sum(s.agree for s in samples) / len(samples), 3),
    }


def measure_library(
    model: str,
    checkpoints: Path,
    sets: Sequence[ImageSet],
    group_photos: Sequence[bytes],
    warmup: int,
    threads: int,
    runtime: str = "auto",
) -> dict:
    """Per-set latencies, the face recall on group photos, and the threads both ran with."""
    # Both pipelines get the same torch threads. One is the service's own setting per request,
    # and on a shared two-core machine two-thread torch timings are mostly scheduler noise: under
    # a load of 8 a 1 ms convolution took 20 ms (median) with two threads, 0.8 ms with one.
    torch.set_num_threads(threads)
    verifier = Verifier.load(
        model, checkpoints, runtime=runtime, onnx_dir=environment.onnx_dir(), threads=threads
    )
    threshold = default_threshold(model, BASELINE_METRIC)
    if threshold is None:
        raise SystemExit(f"model {model} has no calibrated {BASELINE_METRIC} threshold")
    baseline = BaselinePipeline.load(model, checkpoints, threshold, threads)
    return {
        "library": {s.name: measure_set(verifier, baseline, s, warmup) for s in sets},
        "face_recall": face_recall(verifier, baseline, group_photos),
        "threads": {
            "runtime": verifier.runtime,
            "torch_threads": torch.get_num_threads(),
            "baseline_threads": baseline.threads,
        },
    }


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.rstrip() if done.returncode == 0 else None


def modified_files() -> list[str] | None:
    """Tracked files with uncommitted changes: they are part of what "ours" measured."""
    status = git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else [line[3:] for line in status.splitlines()]


def run_facts(argv: Sequence[str], model: str, quick: bool) -> dict:
    return {
        "command": shlex.join(["python", "-m", "benchmarks.verify", *argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "quick": quick,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_modified": modified_files(),
        "edgeface_env": environment.edgeface_variables(),
        "loadavg_start": list(os.getloadavg()),
    }


def run(argv: Sequence[str], model: str, quick: bool, threads: int, runtime: str) -> dict:
    plan = QUICK if quick else FULL
    # The server reads its runtime from the environment it inherits, like any other setting.
    os.environ[environment.RUNTIME] = runtime
    meta = run_facts(argv, model, quick)
    start = time.perf_counter()
    checkpoints, photos = checkpoint_dir(), photos_dir()
    sets = build_sets(photos, plan.portrait_pairs, plan.upscaled_pairs, plan.office_pairs)
    group_photos = [path.read_bytes() for path in office_paths(photos)]
    measured = measure_library(
        model, checkpoints, sets, group_photos, plan.warmup_pairs, threads, runtime
    )
    progress("library done; starting the server")
    server = measure_server(
        checkpoints,
        model,
        sets[0].pairs,
        plan.concurrency,
        plan.server_requests,
        plan.server_time_cap_s,
        plan.warmup_pairs,
        plan.server_rounds,
    )
    meta |= measured["threads"]
    meta["loadavg_end"] = list(os.getloadavg())
    meta["seconds"] = round(time.perf_counter() - start, 1)
    return {
        "meta": meta,
        "library": measured["library"],
        "face_recall": measured["face_recall"],
        "server": server,
    }


def format_library(library: dict) -> list[str]:
    lines = [
        "verify through the library, ms (ratio = ours / baseline, same run)",
        f"{'set':<14}{'pairs':>6}{'ours p50':>10}{'ours p95':>10}{'base p50':>10}"
        f"{'base p95':>10}{'ratio p50':>11}{'ratio p95':>11}",
    ]
    for name, r in library.items():
        lines.append(
            f"{name:<14}{r['pairs']:>6}{r['ours']['p50_ms']:>10.1f}{r['ours']['p95_ms']:>10.1f}"
            f"{r['baseline']['p50_ms']:>10.1f}{r['baseline']['p95_ms']:>10.1f}"
            f"{r['ratio']['p50']:>11.2f}{r['ratio']['p95']:>11.2f}"
        )
    stages = list(dict.fromkeys(s for r in library.values() for s in r["stages_p50_ms"]))
    lines += ["", "our stages, p50 ms per verify (both images)"]
    lines.append(f"{'set':<14}" + "".join(f"{s:>9}" for s in stages))
    for name, r in library.items():
        cells = "".join(f"{r['stages_p50_ms'].get(s, 0.0):>9.1f}" for s in stages)
        lines.append(f"{name:<14}{cells}")
    return lines


def format_server(server: dict) -> list[str]:
    lines = [
        "server, POST /verify with portrait pairs",
        f"{'clients':<8}{'requests':>9}{'failed':>7}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}",
    ]
    for level in server["load"]:
        latency = level["latency"] or {"p50_ms": float("nan"), "p95_ms": float("nan")}
        lines.append(
            f"{level['clients']:<8}{level['requests']:>9}{level['failed']:>7}"
            f"{level['rps']:>8.2f}{latency['p50_ms']:>9.1f}{latency['p95_ms']:>9.1f}"
        )
    ratio_8_1 = server.get("throughput_ratio")
    if ratio_8_1 is not None:
        lines.append(
            f"throughput {server['load'][-1]['clients']} clients / 1 client: {ratio_8_1:.2f}x "
            f"(median of {server.get('rounds', 1)} interleaved rounds: "
            f"{', '.join(f'{r:.2f}' for r in server.get('round_ratios', []))})"
        )
    lines.append(
        f"startup {server['startup_s']:.2f} s to the first /verify 200 "
        f"(python -c 'import api' alone: {server['import_s']:.2f} s, so "
        f"{server['startup_s'] - server['import_s']:.2f} s after imports); "
        f"peak RSS {server['peak_rss_mb']:.0f} MB"
    )
    if server.get("onnx_export_s"):
        lines.append(
            f"(ONNX export before the run, once per checkpoint: {server['onnx_export_s']:.1f} s)"
        )
    return lines


def busy_warning(meta: dict) -> list[str]:
    load = max(meta["loadavg_start"][0], meta["loadavg_end"][0])
    if load <= meta["cpu_count"]:
        return []
    return [
        f"note: load average {load:.1f} on {meta['cpu_count']} CPUs during the run; absolute "
        "times are inflated, the ratios (paired, same run) are the figures to compare"
    ]


def format_report(results: dict) -> str:
    meta = results["meta"]
    header = (
        f"{meta['model']} on {meta.get('runtime', 'torch')}, torch {meta['torch_version']}, "
        f"{meta['torch_threads']} torch threads, "
        f"{meta['cpu_count']} CPUs, {meta['date']}, {meta['seconds']:.0f} s"
    )
    recall = results["face_recall"]
    lines = [header, *busy_warning(meta), ""] + format_library(results["library"])
    lines.append(
        f"group photos: {recall['found_by_ours']} of the baseline's {recall['baseline_faces']} "
        f"faces >= {recall['min_face_px']} px also found by ours"
    )
    lines.append("")
    return "\n".join(lines + format_server(results["server"]))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.verify",
        description="Latency of /verify (library and server) against a frozen baseline.",
    )
    parser.add_argument(
        "--json", type=Path, help=f"where to write the results (default {RESULTS_DIR}/...)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="EdgeFace variant to measure")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="network threads of both library pipelines (default 1, as the service uses)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=environment.runtime(),
        help="what runs our networks, in the library and the server (default auto: ONNX "
        "Runtime when installed); the baseline always uses PyTorch",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    results = run(argv, args.model, args.quick, args.threads, args.runtime)
    path = args.json or RESULTS_DIR / ("verify-quick.json" if args.quick else "verify.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(format_report(results))
    print(f"\nJSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
