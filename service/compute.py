"""The two ``service.jobs.Compute`` implementations, and loading the one the settings ask for.

``ThreadCompute`` runs the jobs on a ``Verifier`` loaded in the server process, in at most
``workers`` threads at once; ``service.processes.WorkerProcesses`` runs them in worker
processes that each load their own model.
"""

from anyio import CapacityLimiter, to_thread

from service.jobs import JOBS, Compute, Images, JobOptions
from service.processes import WorkerProcesses
from service.settings import Settings
from service.startup import load_verifier, self_test
from verification import Verifier
from verification.answers import Answer
from verification.runtime import ensure_onnx, resolve_runtime


class ThreadCompute:
    """Jobs on a ``Verifier`` of this process, at most ``workers`` threads at a time."""

    def __init__(self, verifier: Verifier, workers: int = 1) -> None:
        self.verifier = verifier
        self._limiter = CapacityLimiter(workers)

    async def run(self, job: str, images: Images, options: JobOptions) -> Answer:
        return await to_thread.run_sync(
            JOBS[job], self.verifier, images, options, limiter=self._limiter
        )

    def self_test(self) -> None:
        self_test(self.verifier)

    def close(self) -> None:
        pass


def load_compute(settings: Settings) -> Compute:
    """The model in ``settings.workers`` worker processes, or loaded here for worker threads."""
    if settings.worker_mode == "processes":
        if resolve_runtime(settings.runtime) == "onnx":
            # Export here once (in a child process) rather than in every worker at once.
            ensure_onnx(settings.model, settings.checkpoint_dir, settings.onnx_dir)
        return WorkerProcesses(settings, settings.workers).start()
    return ThreadCompute(load_verifier(settings), settings.workers)
