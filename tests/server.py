"""Start the real service (python api.py) on a free loopback port for integration tests."""

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from benchmarks.server import free_port, stop

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Server:
    base: str
    process: subprocess.Popen
    log_file: IO[str]

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        # pread leaves the file offset alone: the server shares it and would write elsewhere.
        fd = self.log_file.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


def wait_until_ready(server: Server, deadline: float) -> None:
    """Until /readyz answers 200 (the model loaded and passed its self-test)."""
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            response = httpx.get(server.base + "/readyz", timeout=2)
            if response.status_code == 200:
                return
            if response.json().get("status") == "failed":
                raise RuntimeError(f"server is not ready: {response.text}\n{server.log()}")
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not become ready in time:\n{server.log()}")
        time.sleep(0.2)


@contextmanager
def started_server(
    checkpoint_dir: Path,
    env: dict[str, str] | None = None,
    startup_timeout: float = 180.0,
    args: Sequence[str] = (),
    python: str = sys.executable,
) -> Iterator[Server]:
    """Yield a ready server (its base URL, process and log); stop it afterwards.

    Its state (the SQLite gallery) goes to a fresh folder unless ``env`` names one. ``args``
    are more options of ``api.py``; ``python`` the interpreter to run it with.
    """
    port = free_port()
    command = [python, "api.py", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--checkpoint-dir", str(checkpoint_dir), *args]
    # A file, not a pipe: an unread pipe would fill up and stall the server.
    with tempfile.TemporaryFile(mode="w+") as log_file, tempfile.TemporaryDirectory() as data:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "EDGEFACE_DATA_DIR": data, **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        server = Server(f"http://127.0.0.1:{port}", process, log_file)
        try:
            wait_until_ready(server, time.monotonic() + startup_timeout)
            yield server
        finally:
            stop(process)


@contextmanager
def running_server(
    checkpoint_dir: Path, env: dict[str, str] | None = None, startup_timeout: float = 180.0
) -> Iterator[str]:
    """Yield the base URL of a ready server; stop it afterwards."""
    with started_server(checkpoint_dir, env, startup_timeout) as server:
        yield server.base
