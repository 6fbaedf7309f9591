"""Worker processes (the default EDGEFACE_WORKER_MODE) and worker threads, on the real server."""

import io
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.server import process_tree
from face_alignment import HUGE_PAGES_TUNABLE
from tests.server import started_server

SAME = ("002_3a2ef5df", "011_7b37bf1f")


def workers_of(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    descendants = process_tree(pid)[1:]
    return [c for c in descendants if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def verify(base: str, photos_dir: Path, pair=SAME) -> httpx.Response:
    files = {
        f"image{i}": (f"{stem}.jpg", (photos_dir / f"{stem}.jpg").read_bytes(), "image/jpeg")
        for i, stem in enumerate(pair, start=1)
    }
    return httpx.post(base + "/verify", files=files, timeout=60)


@pytest.fixture(scope="module")
def server(checkpoint_dir):
    with started_server(checkpoint_dir, env={"EDGEFACE_WORKERS": "2"}) as running:
        yield running


def test_each_worker_is_its_own_process(server, photos_dir):
    assert len(workers_of(server.process.pid)) == 2
    answer = verify(server.base, photos_dir)
    assert answer.status_code == 200 and answer.json()["match"] is True


def test_workers_run_below_the_server_cpu_priority(server):
    niceness = os.getpriority(os.PRIO_PROCESS, server.process.pid)
    workers = [os.getpriority(os.PRIO_PROCESS, pid) for pid in workers_of(server.process.pid)]
    assert workers == [min(19, niceness + 10)] * 2  # EDGEFACE_WORKER_NICENESS's default


def test_workers_start_with_malloc_huge_pages(server):
    """glibc reads GLIBC_TUNABLES at exec only, so the workers must be spawned with it
    (tests/test_decode.py shows what it does to a large decode's page faults)."""
    for pid in workers_of(server.process.pid):
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        tunables = [entry for entry in environment if entry.startswith(b"GLIBC_TUNABLES=")]
        assert len(tunables) == 1, environment
        assert HUGE_PAGES_TUNABLE.encode() in tunables[0].split(b"=", 1)[1].split(b":")


def minor_faults(pid: int) -> int:
    # /proc/PID/stat: the 10th field, after the command name in parentheses.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def test_workers_keep_freed_decode_memory_for_the_next_upload(server):
    """EDGEFACE_DECODE_MEMORY_KEPT_MB (default 256): a large upload decoded again maps almost
    no new memory. Given back instead, each decode of this 9-megapixel grey+alpha PNG maps
    ~12,000 pages anew (tests/test_decode.py measures both ways)."""
    ramp = np.linspace(0, 255, 3000, dtype=np.uint8)
    grey, alpha = np.meshgrid(ramp, ramp[::-1])
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey, alpha], axis=2), "LA").save(buffer, "PNG")
    files = {"image": ("large.png", buffer.getvalue(), "image/png")}
    workers = workers_of(server.process.pid)

    def embed_all(rounds: int) -> None:
        for _ in range(rounds):  # each worker gets some: the dispatcher takes any free one
            answer = httpx.post(server.base + "/embed", files=files, timeout=60)
            assert answer.status_code == 422 and answer.json()["code"] == "no_face"

    embed_all(6)
    before = sum(minor_faults(pid) for pid in workers)
    embed_all(6)
    per_upload = (sum(minor_faults(pid) for pid in workers) - before) / 6
    assert per_upload < 2_000, per_upload


def test_an_input_error_crosses_the_process_boundary_intact(server, photos_dir):
    # Its header is sound, so the server's probe lets it through and the worker's decoder
    # finds the missing half.
    jpeg = (photos_dir / "006_9135205d.jpg").read_bytes()
    files = {
        "image1": ("a.jpg", (photos_dir / "002_3a2ef5df.jpg").read_bytes(), "image/jpeg"),
        "image2": ("b.jpg", jpeg[: len(jpeg) // 2], "image/jpeg"),
    }
    answer = httpx.post(server.base + "/verify", files=files, timeout=60)
    assert answer.status_code == 400
    assert answer.json()["field"] == "image2" and answer.json()["code"] == "invalid_image"


def test_a_dead_worker_is_replaced_and_no_request_fails(server, photos_dir):
    victims = workers_of(server.process.pid)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    # Four at a time, so that both workers' queues are exercised.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: verify(server.base, photos_dir), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert all(a.json()["match"] for a in answers)
    replacements = workers_of(server.process.pid)
    assert len(replacements) == 2 and not set(replacements) & set(victims)
    assert "worker process died" in server.log()


def test_worker_threads_mode_still_serves(checkpoint_dir, photos_dir):
    env = {"EDGEFACE_WORKER_MODE": "threads"}
    with started_server(checkpoint_dir, env=env) as threads:
        assert workers_of(threads.process.pid) == []
        answer = verify(threads.base, photos_dir)
        assert answer.status_code == 200 and answer.json()["match"] is True
