"""Loading the model in the background, the startup self-test, and what /readyz reports.

The server listens (and /healthz answers) while the weights and the detector load; /readyz says
503 "loading" until a self-test inference produced a finite 512-d embedding, then 200.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Literal

import numpy as np

from backbones.catalog import EMBEDDING_SIZE, CheckpointError
from face_alignment import keep_decode_memory
from service.jobs import Compute
from service.settings import Settings
from verification import Verifier

log = logging.getLogger("edgeface.startup")

Status = Literal["loading", "ok", "failed"]
Loader = Callable[[Settings], Compute]
FailureHandler = Callable[[str], None]


class StartupError(RuntimeError):
    """Loading failed for a reason that is already a sentence for the operator."""


class SelfTestError(RuntimeError):
    """The loaded model does not produce a usable embedding."""


@dataclass
class Readiness:
    """Where startup is. Written by the loading thread, read by requests."""

    status: Status = "loading"
    reason: str | None = "loading the model and the face detector"

    @property
    def ready(self) -> bool:
        return self.status == "ok"

    def succeed(self) -> None:
        self.status, self.reason = "ok", None

    def fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason


def load_verifier(settings: Settings) -> Verifier:
    """Load model and detector; raises CheckpointError with advice when the weights are bad.
    Called in the process that will decode the uploads, which then keeps freed image buffers."""
    if settings.decode_memory_kept_mb > 0:
        keep_decode_memory(settings.decode_memory_kept_mb << 20)
    return Verifier.load(
        settings.model,
        settings.checkpoint_dir,
        max_pixels=settings.max_pixels,
        detect_max_side=settings.detect_max_side,
        runtime=settings.runtime,
        onnx_dir=settings.onnx_dir,
        threads=settings.threads,
    )


def synthetic_crop(size: int = 112) -> np.ndarray:
    """A smooth RGB gradient: not a face, but it exercises every layer of the network."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    red, green = np.meshgrid(ramp, ramp)
    blue = np.full_like(red, 128.0)
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def self_test(verifier: Verifier) -> None:
    """Run the detector and the network once; raise SelfTestError unless the output is sane."""
    verifier.detect(np.zeros((64, 64, 3), dtype=np.uint8))
    embedding = verifier.embed([synthetic_crop()])
    if embedding.shape != (1, EMBEDDING_SIZE):
        expected = (1, EMBEDDING_SIZE)
        raise SelfTestError(f"the model returned shape {embedding.shape}, not {expected}")
    if not np.isfinite(embedding).all():
        raise SelfTestError("the model returned a non-finite embedding")
    if not np.linalg.norm(embedding) > 0:
        raise SelfTestError("the model returned an all-zero embedding")


def prepare(
    settings: Settings, compute: Compute | None, load: Loader
) -> tuple[Compute, float | None]:
    """The compute (loaded unless given) after its self-test, and the seconds loading took."""
    load_seconds = None
    if compute is None:
        start = perf_counter()
        compute = load(settings)
        load_seconds = perf_counter() - start
    compute.self_test()
    return compute, load_seconds


def start_loading(
    settings: Settings,
    compute: Compute | None,
    load: Loader,
    on_ready: Callable[[Compute, float | None], None],
    on_failure: FailureHandler,
) -> threading.Thread:
    """Prepare the compute in a daemon thread; call ``on_ready`` or ``on_failure(reason)``."""

    def run() -> None:
        try:
            prepared, seconds = prepare(settings, compute, load)
        except (CheckpointError, SelfTestError, ValueError) as exc:
            on_failure(str(exc))
        except StartupError as exc:
            on_failure(str(exc))
        except Exception as exc:  # a bug or a broken install: keep the reason, log the trace
            log.exception("startup failed")
            on_failure(f"{type(exc).__name__}: {exc}")
        else:
            on_ready(prepared, seconds)

    thread = threading.Thread(target=run, name="edgeface-startup", daemon=True)
    thread.start()
    return thread
