"""CPU work in worker processes, each with its own loaded model (a ``service.compute.Compute``).

Threads of one process share the GIL, so two requests computing at once on two cores get in
each other's way; separate processes share nothing (README, Performance: worker processes).
Each holds its own model and runs one request at a time. The server process keeps HTTP,
metrics and readiness.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import threading
from multiprocessing.connection import Connection
from typing import Any

from face_alignment import with_huge_pages
from service.jobs import JOBS, Images, JobOptions
from service.settings import Settings
from service.startup import StartupError, load_verifier, self_test
from verification import InputError
from verification.answers import Answer

log = logging.getLogger("edgeface.processes")
_SPAWN = multiprocessing.get_context("spawn")  # no fork: the parent runs threads


class WorkerError(StartupError):
    """A worker process failed to start, or died."""


def _serve(conn: Connection, settings_values: dict[str, Any]) -> None:
    """A worker process: load and self-test the model, then run jobs until told to stop."""
    try:
        settings = Settings(**settings_values)
        # Below the server process, so that when the workers keep every core busy the server
        # still gets a core at once for the short work of each request (parsing, refusing bad
        # input, answering): a bad upload or /healthz then waits for no verify. The workers
        # lose nothing while the server idles, but on a machine shared with other busy
        # programs they get less of the CPU (README, Robustness).
        os.nice(settings.worker_niceness)
        verifier = load_verifier(settings)
        self_test(verifier)
    except Exception as exc:
        conn.send(("failed", str(exc) or type(exc).__name__))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            return
        name, images, options = message
        try:
            conn.send(("ok", JOBS[name](verifier, images, options)))
        except InputError as exc:
            conn.send(("input_error", exc))
        except Exception as exc:  # a bug: the parent answers 500 and logs it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Worker:
    def __init__(self, settings_values: dict[str, Any], index: int) -> None:
        self.conn, child = _SPAWN.Pipe()
        # The spawned interpreter inherits this environment, and glibc reads its tunables only
        # at exec: malloc's huge pages for the worker's large decodes (face_alignment.images).
        os.environ["GLIBC_TUNABLES"] = with_huge_pages(os.environ.get("GLIBC_TUNABLES"))
        self.process = _SPAWN.Process(
            target=_serve, args=(child, settings_values), name=f"edgeface-worker-{index}"
        )
        self.process.daemon = True
        self.process.start()
        child.close()

    def wait_ready(self) -> None:
        try:
            kind, reason = self.conn.recv()
        except EOFError:
            kind, reason = "failed", f"worker exited with status {self.process.exitcode}"
        if kind != "ready":
            raise WorkerError(reason)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


class WorkerProcesses:
    """``count`` worker processes fed from one queue; ``await run(job, images, options)``."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.count = count
        self._values = settings.model_dump(exclude={"api_key"})
        self._jobs: queue.Queue = queue.Queue()
        self._workers: list[Worker] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> "WorkerProcesses":
        """Start every worker (they load in parallel); raise WorkerError if one cannot."""
        self._workers = [Worker(self._values, i) for i in range(self.count)]
        try:
            for worker in self._workers:
                worker.wait_ready()
        except WorkerError:
            self.close()
            raise
        for index in range(self.count):
            thread = threading.Thread(
                target=self._dispatch, args=(index,), name=f"edgeface-dispatch-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    async def run(self, job: str, images: Images, options: JobOptions) -> Answer:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((job, images, options, future, loop))
        return await future

    def self_test(self) -> None:
        """Nothing left to do: every worker, a replacement too, self-tests before it reports
        ready, and ``start`` raises if one cannot."""

    def _dispatch(self, index: int) -> None:
        while (job := self._jobs.get()) is not None:
            name, images, options, future, loop = job
            if future.cancelled():  # the client went away while the job waited
                continue
            kind, value = self._send(index, (name, images, options), retry=True)
            loop.call_soon_threadsafe(_settle, future, kind, value)

    def _send(self, index: int, job: tuple, retry: bool) -> tuple[str, Any]:
        """Run ``job`` on worker ``index``. A dead worker is replaced and the job sent once more
        (a worker that died idle must not fail a request; a job that kills a worker twice
        fails with WorkerError)."""
        worker = self._workers[index]
        try:
            worker.conn.send(job)
            return worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            reason = f"worker process died (exit status {worker.process.exitcode})"
            log.error("%s; starting a new one", reason)
            try:
                self._workers[index] = self._replace(index)
            except WorkerError as exc:
                return "error", f"{reason}, and a new one failed to start: {exc}"
            if retry:
                return self._send(index, job, retry=False)
            return "error", reason

    def _replace(self, index: int) -> Worker:
        worker = Worker(self._values, index)
        worker.wait_ready()
        return worker

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for worker in self._workers:
            worker.stop()


def _settle(future: asyncio.Future, kind: str, value: Any) -> None:
    if future.done():
        return
    if kind == "ok":
        future.set_result(value)
    elif kind == "input_error":
        future.set_exception(value)
    else:
        future.set_exception(WorkerError(value))
