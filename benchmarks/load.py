"""Load test of the real service: ``python -m benchmarks.load [--clients 32] [--requests 200]
[--json PATH] [--url URL] [--time-cap S]``

Unless ``--url`` is given it starts ``python api.py`` on a free loopback port (weights from
``EDGEFACE_CHECKPOINT_DIR``, default ``../shared/checkpoints``) with a 2 MB upload limit, so the
oversize inputs stay cheap. Photos come from ``EDGEFACE_PHOTOS_DIR`` (``../shared/photos``).

``clients`` threads each send ``requests`` requests (stopping early at ``--time-cap``), mixing
valid verifies and embeds with bad inputs, alternately to /verify and /embed, as multipart and as
JSON. Every answer must carry its documented status and error code. After a warm-up and after the
run it reads the server's VmRSS from /proc. Prints a table, writes JSON, and exits 1 if an
expectation fails: a failed connection, a status >= 500, an undocumented answer, or RSS after the
run more than 20% away from RSS after the warm-up.
"""

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

from benchmarks.server import free_port, stop, tail, tree_memory_mb
from benchmarks.sets import checkpoint_dir, portrait_paths, rotating_pairs
from benchmarks.stats import summarize
from environment import REPO, photos_dir

DEFAULT_CLIENTS = 32
DEFAULT_REQUESTS = 200
DEFAULT_TIME_CAP_S = 1800.0
OWN_SERVER_MAX_UPLOAD_BYTES = 2 * 1024 * 1024
SERVER_DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
REQUEST_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 300.0
RSS_TOLERANCE = 0.20
# Measured: under load the server's RSS climbs for its first several hundred requests (allocator
# and ONNX Runtime arenas, spooled uploads, request buffers at full concurrency) and then moves
# within about +-7% around a level: with 32 clients it settled after some 2,000 requests and a
# 19,200-request run then ended at 0.98x its RSS after the warm-up. A shorter warm-up compares
# the run with a server that has not settled yet (warm-ups of 640 and 1,024 read 1.23x, 1.19x).
WARMUP_SHARE = 0.10
SETTLE_REQUESTS = 2000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class Kind:
    name: str
    status: int
    code: str | None  # the documented error code; None for a 200
    what: str


KINDS = {
    kind.name: kind
    for kind in (
        Kind("verify_ok", 200, None, "two portraits"),
        Kind("embed_ok", 200, None, "one portrait"),
        Kind("not_image", 400, "invalid_image", "text bytes, not an image"),
        Kind("empty", 400, "invalid_image", "zero bytes"),
        Kind("truncated", 400, "invalid_image", "the first half of a JPEG"),
        Kind("oversize", 413, "too_large", "one byte over the server's upload limit"),
        Kind("no_face", 422, "no_face", "a blank grey image"),
    )
}
# One cycle of 20 requests: 3 of them (15%) reach the detector and the network with faces;
# the rest are bad inputs, refused before detection or (no_face) after a cheap one.
MIX = (
    "verify_ok",
    "not_image",
    "empty",
    "truncated",
    "oversize",
    "no_face",
    "embed_ok",
    "not_image",
    "truncated",
    "empty",
    "verify_ok",
    "oversize",
    "no_face",
    "not_image",
    "truncated",
    "empty",
    "oversize",
    "no_face",
    "not_image",
    "truncated",
)
MIN_WARMUP = 2 * len(MIX)
# Successive cycles take turns: /verify or /embed for the bad inputs, multipart or JSON for all.
ROUTES_AND_ENCODINGS = (
    ("/verify", "multipart"),
    ("/embed", "multipart"),
    ("/verify", "json"),
    ("/embed", "json"),
)


@dataclass(frozen=True)
class Inputs:
    portraits: list[bytes]
    pairs: list[tuple[bytes, bytes]]
    bad: dict[str, bytes]  # kind name -> image bytes


@dataclass(frozen=True)
class Call:
    kind: Kind
    path: str
    encoding: str
    images: dict[str, bytes]
    bad_field: str | None  # the field the error must name


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def load_inputs(folder: Path, max_upload_bytes: int) -> Inputs:
    """Every body the run sends, encoded in memory before it starts."""
    portraits = [path.read_bytes() for path in portrait_paths(folder)]
    jpeg = portraits[0]
    bad = {
        "not_image": b"this is plain text, not a picture\n" * 8,
        "empty": b"",
        "truncated": jpeg[: len(jpeg) // 2],
        # A real JPEG padded past the limit: the size check, not the decoder, must refuse it.
        "oversize": (jpeg + b"\0" * (max_upload_bytes + 1))[: max_upload_bytes + 1],
        "no_face": png(np.full((300, 300, 3), 128, dtype=np.uint8)),
    }
    pairs = [(portraits[a], portraits[b]) for a, b in rotating_pairs(len(portraits), 32)]
    return Inputs(portraits, pairs, bad)


def plan(ticket: int, inputs: Inputs) -> Call:
    """The ``ticket``-th request of the run: its kind, route, encoding and images."""
    kind = KINDS[MIX[ticket % len(MIX)]]
    cycle = ticket // len(MIX)
    route, encoding = ROUTES_AND_ENCODINGS[cycle % len(ROUTES_AND_ENCODINGS)]
    portrait = inputs.portraits[cycle % len(inputs.portraits)]
    if kind.name == "verify_ok":
        first, second = inputs.pairs[cycle % len(inputs.pairs)]
        return Call(kind, "/verify", encoding, {"image1": first, "image2": second}, None)
    if kind.name == "embed_ok":
        return Call(kind, "/embed", encoding, {"image": portrait}, None)
    bad = inputs.bad[kind.name]
    if route == "/verify":
        # The bad image first: the service stops at it without touching the good one.
        return Call(kind, route, encoding, {"image1": bad, "image2": portrait}, "image1")
    return Call(kind, route, encoding, {"image": bad}, "image")


def send(http: httpx.Client, call: Call) -> httpx.Response:
    if call.encoding == "json":
        body = {name: base64.b64encode(data).decode() for name, data in call.images.items()}
        return http.post(call.path, json=body)
    files = {name: (f"{name}.jpg", data, "image/jpeg") for name, data in call.images.items()}
    return http.post(call.path, files=files)


def as_documented(call: Call, response: httpx.Response) -> bool:
    if response.status_code != call.kind.status:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    if call.kind.code is None:
        return isinstance(body, dict) and "model" in body
    return body.get("code") == call.kind.code and body.get("field") == call.bad_field


@dataclass
class Tally:
    """What one kind of request got back."""

    sent: int = 0
    as_documented: int = 0
    unexpected: int = 0
    connection_errors: int = 0
    server_errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # the first few unexpected answers

    def add(self, call: Call, response: httpx.Response | None, seconds: float, error: str) -> None:
        self.sent += 1
        if response is None:
            self.connection_errors += 1
            self.statuses["connection error"] += 1
            self._sample(f"{call.path} {call.encoding}: {error}")
            return
        self.latencies.append(seconds)
        self.statuses[str(response.status_code)] += 1
        self.server_errors += response.status_code >= 500
        if as_documented(call, response):
            self.as_documented += 1
        else:
            self.unexpected += 1
            self._sample(f"{call.path} {call.encoding}: {response.status_code} {response.text}")

    def _sample(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text[:300])


@dataclass
class RunResult:
    tallies: dict[str, Tally]
    seconds: float
    planned: int
    time_capped: bool


def new_tallies() -> dict[str, Tally]:
    return {name: Tally() for name in KINDS}


def run_clients(
    base_url: str,
    inputs: Inputs,
    clients: int,
    requests: int,
    time_cap_s: float,
    tallies: dict[str, Tally] | None = None,
) -> RunResult:
    """``clients`` threads, each with its own connection, sending ``requests`` requests."""
    tallies = new_tallies() if tallies is None else tallies
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + time_cap_s
    capped = threading.Event()

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as http:
            for k in range(requests):
                if time.perf_counter() > deadline:
                    capped.set()
                    return
                # Interleaved tickets: at any moment the clients are on different kinds.
                call = plan(k * clients + index, inputs)
                began = time.perf_counter()
                response, error = None, ""
                try:
                    response = send(http, call)
                except httpx.TransportError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                seconds = time.perf_counter() - began
                with lock:
                    tallies[call.kind.name].add(call, response, seconds, error)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return RunResult(tallies, time.perf_counter() - start, clients * requests, capped.is_set())


class RSSSampler:
    """Samples the server's VmRSS (its worker processes included) every ``interval_s`` with the
    requests answered so far, to tell a leak (RSS rising with requests) from a one-off
    high-water mark."""

    def __init__(self, pid: int, tallies: dict[str, Tally], interval_s: float = 1.0) -> None:
        self.pid, self.tallies, self.interval_s = pid, tallies, interval_s
        self.samples: list[tuple[float, int, float]] = []  # seconds, requests done, MB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.perf_counter()

    def _sample(self) -> None:
        done = sum(t.sent for t in self.tallies.values())
        elapsed = round(time.perf_counter() - self._start, 1)
        self.samples.append((elapsed, done, tree_memory_mb(self.pid)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> "RSSSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def at_fractions(self, total: int, fractions: Sequence[float]) -> dict[str, float]:
        """RSS at the first sample where each fraction of ``total`` requests was answered."""
        marks = {}
        for fraction in fractions:
            reached = [mb for _, done, mb in self.samples if done >= fraction * total]
            if reached:
                marks[f"{fraction:.0%}"] = reached[0]
        return marks


@dataclass(frozen=True)
class Target:
    base_url: str
    pid: int | None  # known when this script started the server, or given with --server-pid
    max_upload_bytes: int
    started_here: bool


@contextmanager
def own_server(checkpoints: Path, max_upload_bytes: int) -> Iterator[Target]:
    """``python api.py`` on a free loopback port with the API key off; stopped afterwards."""
    port = free_port()
    command = [sys.executable, "api.py", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--checkpoint-dir", str(checkpoints)]
    env = {**os.environ, "EDGEFACE_MAX_UPLOAD_BYTES": str(max_upload_bytes), "EDGEFACE_API_KEY": ""}
    base_url = f"http://127.0.0.1:{port}"
    # A file, not a pipe: an unread pipe would fill up and stall the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ready(base_url, process, log, time.monotonic() + STARTUP_TIMEOUT_S)
            yield Target(base_url, process.pid, max_upload_bytes, started_here=True)
        finally:
            stop(process)


def wait_until_ready(base_url: str, process: subprocess.Popen, log: Any, deadline: float) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited during startup:\n{tail(log)}")
        try:
            if httpx.get(base_url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not ready in time:\n{tail(log)}")
        time.sleep(0.2)


def kind_report(kind: Kind, tally: Tally) -> dict[str, Any]:
    return {
        "what": kind.what,
        "expected_status": kind.status,
        "expected_code": kind.code,
        "sent": tally.sent,
        "as_documented": tally.as_documented,
        "unexpected": tally.unexpected,
        "connection_errors": tally.connection_errors,
        "statuses": dict(sorted(tally.statuses.items())),
        "latency": summarize(tally.latencies) if tally.latencies else None,
        "unexpected_samples": tally.samples,
    }


def build_report(
    run: RunResult, target: Target, clients: int, requests: int, rss: dict[str, Any]
) -> dict[str, Any]:
    tallies = run.tallies
    sent = sum(t.sent for t in tallies.values())
    ratio = None
    if rss.get("after_warmup_mb") and rss.get("after_run_mb"):
        ratio = round(rss["after_run_mb"] / rss["after_warmup_mb"], 4)
    report = {
        "config": {
            "clients": clients,
            "requests_per_client": requests,
            "planned": run.planned,
            "time_capped": run.time_capped,
            "url": target.base_url,
            "server_started_here": target.started_here,
            "server_pid": target.pid,
            "max_upload_bytes": target.max_upload_bytes,
            "mix": dict(Counter(MIX)),
        },
        "totals": {
            "requests": sent,
            "seconds": round(run.seconds, 2),
            "requests_per_s": round(sent / run.seconds, 2) if run.seconds > 0 else None,
            "failed_connections": sum(t.connection_errors for t in tallies.values()),
            "server_errors": sum(t.server_errors for t in tallies.values()),
            "unexpected": sum(t.unexpected for t in tallies.values()),
        },
        "kinds": {name: kind_report(KINDS[name], tally) for name, tally in tallies.items()},
        "rss": {**rss, "ratio": ratio, "tolerance": RSS_TOLERANCE},
    }
    report["failures"] = expectation_failures(report)
    return report


def expectation_failures(report: dict[str, Any]) -> list[str]:
    """Every expectation the run missed, in words; empty when it passed."""
    totals, rss = report["totals"], report["rss"]
    failures = []
    if totals["failed_connections"]:
        failures.append(f"{totals['failed_connections']} failed connections")
    if totals["server_errors"]:
        failures.append(f"{totals['server_errors']} responses with status >= 500")
    for name, kind in report["kinds"].items():
        if kind["unexpected"]:
            failures.append(
                f"{name}: {kind['unexpected']} of {kind['sent']} not {kind['expected_status']}"
                f" {kind['expected_code'] or ''}".rstrip()
            )
    if report["config"]["server_pid"] is not None and rss["ratio"] is None:
        failures.append("server RSS was not measured")
    if rss["ratio"] is not None and abs(rss["ratio"] - 1.0) > rss["tolerance"]:
        failures.append(
            f"server RSS after the run is {rss['ratio']:.2f}x RSS after the warm-up "
            f"(tolerance {rss['tolerance']:.0%})"
        )
    return failures


def ms(latency: dict[str, Any] | None, key: str) -> str:
    return f"{latency[key]:.1f}" if latency else "-"


def print_report(report: dict[str, Any]) -> None:
    config, totals, rss = report["config"], report["totals"], report["rss"]
    origin = "started here" if config["server_started_here"] else "given"
    capped = " -- STOPPED BY THE TIME CAP" if config["time_capped"] else ""
    print(
        f"load test of {config['url']} ({origin}, upload limit {config['max_upload_bytes']} "
        f"bytes): {config['clients']} clients x {config['requests_per_client']} requests{capped}"
    )
    warm = report["warmup"]
    print(
        f"warm-up: {warm['requests']} requests in {warm['seconds']} s "
        f"({warm['unexpected']} unexpected, not counted below)"
    )
    header = (
        f"{'kind':<10} {'expect':>6} {'sent':>6} {'as doc':>6} {'unexp':>6} {'conn':>5}"
        f" {'p50 ms':>8} {'p95 ms':>8}  statuses"
    )
    print(header)
    print("-" * len(header))
    for name, kind in report["kinds"].items():
        statuses = ", ".join(f"{s}: {n}" for s, n in kind["statuses"].items())
        counts = (
            f"{kind['expected_status']:>6} {kind['sent']:>6} {kind['as_documented']:>6}"
            f" {kind['unexpected']:>6} {kind['connection_errors']:>5}"
        )
        latency = f"{ms(kind['latency'], 'p50_ms'):>8} {ms(kind['latency'], 'p95_ms'):>8}"
        print(f"{name:<10} {counts} {latency}  {statuses}")
    print(
        f"total: {totals['requests']} requests in {totals['seconds']} s, "
        f"{totals['requests_per_s']} requests/s; failed connections: "
        f"{totals['failed_connections']}; status >= 500: {totals['server_errors']}; "
        f"undocumented answers: {totals['unexpected']}"
    )
    if rss["ratio"] is None:
        print("server RSS: not measured (no server PID; pass --server-pid with --url)")
    else:
        print(
            f"server RSS: {rss['after_warmup_mb']} MB after warm-up, {rss['after_run_mb']} MB"
            f" after the run (ratio {rss['ratio']}, peak {rss['peak_mb']} MB)"
        )
        marks = rss["at_share_of_requests_mb"]
        shares = ", ".join(f"{share}: {mb}" for share, mb in marks.items())
        print(f"server RSS (MB) once this share of the requests was answered: {shares}")
        if "50%" in marks and "100%" in marks:
            growth = marks["100%"] / marks["50%"] - 1
            print(f"server RSS over the second half of the run: {growth:+.1%}")
    for name, kind in report["kinds"].items():
        for sample in kind["unexpected_samples"]:
            print(f"  unexpected {name}: {sample}")
    verdict = "FAILED: " + "; ".join(report["failures"]) if report["failures"] else "all passed"
    print(f"expectations: {verdict}")


def measure(
    target: Target,
    inputs: Inputs,
    clients: int,
    requests: int,
    time_cap_s: float,
    warmup: int,
) -> dict[str, Any]:
    """Warm up, read RSS, run the load, read RSS again; the report."""
    # The same concurrency as the run, so thread pools and allocator arenas are grown first.
    warm_clients = min(clients, warmup)
    warm = run_clients(
        target.base_url, inputs, warm_clients, -(-warmup // warm_clients), time_cap_s
    )
    rss: dict[str, Any] = {"after_warmup_mb": None, "after_run_mb": None, "peak_mb": None}
    tallies = new_tallies()
    if target.pid is None:
        run = run_clients(target.base_url, inputs, clients, requests, time_cap_s, tallies)
    else:
        rss["after_warmup_mb"] = tree_memory_mb(target.pid)
        with RSSSampler(target.pid, tallies) as sampler:
            run = run_clients(target.base_url, inputs, clients, requests, time_cap_s, tallies)
        rss["after_run_mb"] = tree_memory_mb(target.pid)
        rss["peak_mb"] = tree_memory_mb(target.pid, "VmHWM")
        rss["at_share_of_requests_mb"] = sampler.at_fractions(
            clients * requests, (0.1, 0.25, 0.5, 0.75, 1.0)
        )
        rss["timeline"] = sampler.samples
    report = build_report(run, target, clients, requests, rss)
    report["warmup"] = {
        "requests": sum(t.sent for t in warm.tallies.values()),
        "seconds": round(warm.seconds, 2),
        "unexpected": sum(t.unexpected + t.connection_errors for t in warm.tallies.values()),
    }
    return report


@contextmanager
def target_for(args: argparse.Namespace) -> Iterator[Target]:
    if args.url is None:
        with own_server(args.checkpoint_dir, args.max_upload_bytes) as target:
            yield target
        return
    host = urlsplit(args.url).hostname
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"--url must be a loopback address, not {host}")
    yield Target(args.url.rstrip("/"), args.server_pid, args.max_upload_bytes, started_here=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="per client")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--url", help="a running server on loopback (default: start one)")
    parser.add_argument("--server-pid", type=int, help="with --url: its PID, to read its RSS")
    parser.add_argument(
        "--max-upload-bytes",
        type=int,
        help=f"the server's upload limit (default {OWN_SERVER_MAX_UPLOAD_BYTES} for the server "
        f"started here, {SERVER_DEFAULT_MAX_UPLOAD_BYTES} with --url)",
    )
    parser.add_argument("--time-cap", type=float, default=DEFAULT_TIME_CAP_S, help="seconds")
    parser.add_argument(
        "--warmup",
        type=int,
        help=f"warm-up requests (default: {round(WARMUP_SHARE * 100)}%% of the run's requests, "
        f"at least {max(MIN_WARMUP, SETTLE_REQUESTS)})",
    )
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--photos-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.warmup is None:
        total = args.clients * args.requests
        args.warmup = max(MIN_WARMUP, SETTLE_REQUESTS, round(WARMUP_SHARE * total))
    if args.clients < 1 or args.requests < 1 or args.warmup < 1:
        parser.error("--clients, --requests and --warmup must be at least 1")
    if args.max_upload_bytes is None:
        own = args.url is None
        args.max_upload_bytes = (
            OWN_SERVER_MAX_UPLOAD_BYTES if own else SERVER_DEFAULT_MAX_UPLOAD_BYTES
        )
    args.checkpoint_dir = args.checkpoint_dir or checkpoint_dir()
    args.photos_dir = args.photos_dir or photos_dir()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    inputs = load_inputs(args.photos_dir, args.max_upload_bytes)
    with target_for(args) as target:
        report = measure(target, inputs, args.clients, args.requests, args.time_cap, args.warmup)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
