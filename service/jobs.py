"""The CPU work of a request: plain functions of a ``Verifier``, shaped by
``verification.answers``, and ``Compute``, the interface of what runs them: threads of the
server (``service.compute.ThreadCompute``) or worker processes
(``service.processes.WorkerProcesses``). Routes only see ``Compute``."""

from dataclasses import dataclass, fields
from typing import Protocol

from gallery.operations import gallery_faces
from verification import Verifier, embedding_answer, verification_answer
from verification.answers import Answer
from verification.pipeline import FaceChoice

Images = dict[str, bytes]


@dataclass(frozen=True)
class JobOptions:
    """What the computation needs of a request's options (picklable, no uploads)."""

    metric: str = "cosine"
    threshold: float | None = None
    far: float | None = None
    face: FaceChoice = "largest"
    return_crops: bool = False
    max_faces: int = 1


def job_options(options: object) -> JobOptions:
    names = [f.name for f in fields(JobOptions) if hasattr(options, f.name)]
    return JobOptions(**{name: getattr(options, name) for name in names})


def verify_job(verifier: Verifier, images: Images, options: JobOptions) -> Answer:
    result = verifier.verify(
        images["image1"],
        images["image2"],
        options.metric,
        options.threshold,
        options.face,
        options.far,
    )
    return verification_answer(result, return_crops=options.return_crops)


def embed_job(verifier: Verifier, images: Images, options: JobOptions) -> Answer:
    faces = verifier.embed_faces(images["image"], "image", options.max_faces)
    return embedding_answer(faces, verifier.model_name, return_crops=options.return_crops)


def enroll_job(verifier: Verifier, images: Images, options: JobOptions) -> Answer:
    """The largest face (enrollment, and verification against a subject)."""
    return gallery_faces(verifier, images["image"], 1)


def identify_job(verifier: Verifier, images: Images, options: JobOptions) -> Answer:
    return gallery_faces(verifier, images["image"], options.max_faces)


JOBS = {"verify": verify_job, "embed": embed_job, "enroll": enroll_job, "identify": identify_job}


class Compute(Protocol):
    """Runs the jobs above on a loaded model."""

    async def run(self, job: str, images: Images, options: JobOptions) -> Answer:
        """The answer of ``JOBS[job]``; raises ``InputError`` for bad input."""
        ...

    def self_test(self) -> None:
        """Raise ``SelfTestError`` unless the model gives a usable embedding."""
        ...

    def close(self) -> None:
        """Stop whatever runs the jobs."""
        ...
