"""The CPU work of a request: plain functions of a ``Verifier``, run in a thread of the server
or in a worker process (``service.processes``), shaped by ``verification.answers``."""

from dataclasses import dataclass, fields

from anyio import CapacityLimiter, to_thread

from verification import Verifier, embedding_answer, verification_answer
from verification.answers import Answer


@dataclass(frozen=True)
class JobOptions:
    """What the computation needs of a request's options (picklable, no uploads)."""

    metric: str = "cosine"
    threshold: float | None = None
    return_crops: bool = False
    max_faces: int = 1


def job_options(options: object) -> JobOptions:
    names = [f.name for f in fields(JobOptions) if hasattr(options, f.name)]
    return JobOptions(**{name: getattr(options, name) for name in names})


def verify_job(verifier: Verifier, images: dict[str, bytes], options: JobOptions) -> Answer:
    result = verifier.verify(images["image1"], images["image2"], options.metric, options.threshold)
    return verification_answer(result, return_crops=options.return_crops)


def embed_job(verifier: Verifier, images: dict[str, bytes], options: JobOptions) -> Answer:
    faces = verifier.embed_faces(images["image"], "image", options.max_faces)
    return embedding_answer(faces, verifier.model_name, return_crops=options.return_crops)


JOBS = {"verify": verify_job, "embed": embed_job}


async def run_job(
    computer: object,
    name: str,
    images: dict[str, bytes],
    options: JobOptions,
    limiter: CapacityLimiter,
) -> Answer:
    """Run job ``name`` on worker processes (anything with ``run``) or in a limited thread."""
    run = getattr(computer, "run", None)
    if run is not None:
        return await run(name, images, options)
    return await to_thread.run_sync(JOBS[name], computer, images, options, limiter=limiter)
