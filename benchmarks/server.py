"""The real service as a subprocess on a loopback port: startup time, load, peak memory."""

import itertools
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

import environment
from benchmarks.sets import Pair
from benchmarks.stats import summarize
from environment import REPO
from verification.runtime import ensure_onnx, resolve_runtime

REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int
    command: list[str]
    startup_s: float  # process start until the first POST /verify answered 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def verify_files(pair: Pair) -> dict[str, tuple[str, bytes, str]]:
    return {
        "image1": ("image1.jpg", pair[0], "image/jpeg"),
        "image2": ("image2.jpg", pair[1], "image/jpeg"),
    }


def import_seconds() -> float:
    """Wall time of ``python -c "import api"``: what startup spends before any of our code."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import api"], cwd=REPO, check=True)
    return time.perf_counter() - start


@contextmanager
def running_server(
    checkpoint_dir: Path, model: str, probe: Pair, timeout_s: float = 180.0
) -> Iterator[Server]:
    """Start ``python api.py`` on a free port, wait until /verify answers 200, stop it after."""
    port = free_port()
    command = [sys.executable, "api.py", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--model", model, "--checkpoint-dir", str(checkpoint_dir)]
    # A file, not a pipe: an unread pipe would fill up and stall the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_for_verify(base_url, process, log, probe, start + timeout_s)
            yield Server(base_url, process.pid, command, time.perf_counter() - start)
        finally:
            stop(process)


def wait_for_verify(
    base_url: str, process: subprocess.Popen, log: IO[str], probe: Pair, deadline: float
) -> None:
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited during startup:\n{tail(log)}")
            try:
                response = http.post("/verify", files=verify_files(probe))
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            # 503 is the service saying it is still loading; anything else is a real failure.
            if response is not None and response.status_code != 503:
                raise RuntimeError(
                    f"POST /verify answered {response.status_code}: {response.text}\n{tail(log)}"
                )
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the server did not answer /verify in time:\n{tail(log)}")
            time.sleep(0.05)


def tail(log: IO[str], chars: int = 4000) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-chars:]


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the server's worker processes), from /proc (Linux)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except FileNotFoundError:  # the thread ended since the listing
                continue
            pending += [int(child) for child in children]
    return found


def tree_memory_mb(pid: int, key: str = "VmRSS") -> float:
    """A /proc/PID/status memory figure summed over ``pid`` and its descendants, in MB.

    For VmHWM (each process's own peak) the sum is an upper bound of the tree's peak.
    """
    total_kb = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                total_kb += int(line.split()[1])
    return round(total_kb / 1024.0, 1)


# A /verify body encoded once, and its headers.
Body = tuple[bytes, dict[str, str]]


@dataclass
class LoadRecord:
    latencies: list[float]
    failed: int = 0
    seconds: float = 0.0

    def summary(self, clients: int) -> dict:
        return {
            "clients": clients,
            "requests": len(self.latencies) + self.failed,
            "failed": self.failed,
            "seconds": round(self.seconds, 2),
            "rps": round(len(self.latencies) / self.seconds, 2) if self.seconds else 0.0,
            "latency": summarize(self.latencies) if self.latencies else None,
        }


def encoded_verify(pair: Pair) -> Body:
    """The multipart body of a /verify and its headers, encoded once.

    The load clients share the server's two cores; encoding each body anew cost them 13% of the
    machine at 8 clients (and almost nothing at 1, where the second core is idle), which would
    be measured as the server scaling worse than it does.
    """
    request = httpx.Request("POST", "http://benchmark/verify", files=verify_files(pair))
    body = request.read()
    return body, {"content-type": request.headers["content-type"]}


def run_load(
    base_url: str, bodies: Sequence[Body], clients: int, requests: int, time_cap_s: float
) -> LoadRecord:
    """``clients`` threads post ``bodies`` (from ``encoded_verify``) in turn to /verify until
    ``requests`` have been sent or ``time_cap_s`` has passed (requests in flight then finish).
    Failures are connection errors and answers other than 200."""
    tickets = itertools.count()
    record = LoadRecord(latencies=[])
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + time_cap_s

    def client() -> None:
        with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as http:
            while (ticket := next(tickets)) < requests and time.perf_counter() < deadline:
                ok, seconds = post_encoded(http, *bodies[ticket % len(bodies)])
                with lock:
                    if ok:
                        record.latencies.append(seconds)
                    else:
                        record.failed += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record.seconds = time.perf_counter() - start
    return record


def load_rounds(
    base_url: str,
    pairs: Sequence[Pair],
    concurrency: Sequence[int],
    requests: int,
    time_cap_s: float,
    rounds: int,
) -> tuple[list[dict], list[float]]:
    """Each concurrency level in turn, ``rounds`` times over, ``requests / rounds`` each time.

    This machine's speed drifts by tens of percent within a minute (other virtual machines on
    the host), so levels measured one after the other compare different machines. Interleaved
    rounds pool each level over the same stretch of time, and the throughput ratio of the
    highest level to one client is the median of the rounds' own ratios.
    """
    bodies = [encoded_verify(pair) for pair in pairs]
    per_round = max(1, requests // rounds)
    pooled = {clients: LoadRecord(latencies=[]) for clients in concurrency}
    ratios = []
    for _ in range(rounds):
        rps = {}
        for clients in concurrency:
            record = run_load(base_url, bodies, clients, per_round, time_cap_s / rounds)
            total = pooled[clients]
            total.latencies += record.latencies
            total.failed += record.failed
            total.seconds += record.seconds
            rps[clients] = len(record.latencies) / record.seconds if record.seconds else 0.0
        if rps.get(1):
            ratios.append(rps[max(concurrency)] / rps[1])
    levels = [pooled[clients].summary(clients) for clients in concurrency]
    return levels, [round(r, 3) for r in ratios]


def post_encoded(http: httpx.Client, body: bytes, headers: dict[str, str]) -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        ok = http.post("/verify", content=body, headers=headers).status_code == 200
    except httpx.HTTPError:
        ok = False
    return ok, time.perf_counter() - start


def post_verify(http: httpx.Client, pair: Pair) -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        ok = http.post("/verify", files=verify_files(pair)).status_code == 200
    except httpx.HTTPError:
        ok = False
    return ok, time.perf_counter() - start


def measure_server(
    checkpoint_dir: Path,
    model: str,
    pairs: Sequence[Pair],
    concurrency: Sequence[int],
    requests: int,
    time_cap_s: float,
    warmup: int,
    rounds: int = 1,
) -> dict:
    """Startup, warm-up, interleaved load rounds over the concurrency levels, the peak RSS.

    The ONNX export (once per checkpoint, cached) happens before the clock starts: startup is
    what every later start costs; the export's own time is reported beside it.
    """
    start = time.perf_counter()
    if resolve_runtime(environment.runtime()) == "onnx":
        ensure_onnx(model, checkpoint_dir, environment.onnx_dir())
    export_s = time.perf_counter() - start
    imports = import_seconds()
    with running_server(checkpoint_dir, model, pairs[0]) as server:
        with httpx.Client(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S) as http:
            for pair in pairs[:warmup]:
                post_verify(http, pair)
        levels, round_ratios = load_rounds(
            server.base_url, pairs, concurrency, requests, time_cap_s, rounds
        )
        rss = tree_memory_mb(server.pid, "VmHWM")
    return {
        "command": " ".join(server.command[1:]),
        "onnx_export_s": round(export_s, 2),
        "import_s": round(imports, 2),
        "rounds": rounds,
        "throughput_ratio": round(statistics.median(round_ratios), 2) if round_ratios else None,
        "round_ratios": round_ratios,
        "startup_s": round(server.startup_s, 2),
        "peak_rss_mb": rss,
        "load": levels,
    }
