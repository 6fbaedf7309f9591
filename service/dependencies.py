"""What routes get injected: settings, the compute that runs jobs, the limiter of the request
parsing threads, metrics.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
a round trip through another thread (and a wait for the interpreter lock) per dependency per
request, for what is one attribute read. Under load that handoff, not the work, was a large
part of what the event loop spent on each request (README, Robustness).
"""

from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request

from service.jobs import Compute
from service.observability import Metrics
from service.settings import Settings
from service.startup import Readiness

RETRY_AFTER_SECONDS = "5"


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_readiness(request: Request) -> Readiness:
    return request.app.state.readiness


async def get_compute(request: Request) -> Compute:
    """The compute once the startup self-test passed; 503 (JSON, Retry-After) until then."""
    readiness: Readiness = request.app.state.readiness
    if not readiness.ready:
        raise HTTPException(
            503,
            f"the service is not ready: {readiness.reason}",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    return request.app.state.compute


async def get_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.cpu_limiter


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
ComputeDep = Annotated[Compute, Depends(get_compute)]
LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
