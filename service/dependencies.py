"""What routes get injected: settings, the compute that runs jobs, the limiter of the request
parsing threads, metrics."""

from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Request

from service.jobs import Compute
from service.observability import Metrics
from service.settings import Settings
from service.startup import Readiness

RETRY_AFTER_SECONDS = "5"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_readiness(request: Request) -> Readiness:
    return request.app.state.readiness


def get_compute(request: Request) -> Compute:
    """The compute once the startup self-test passed; 503 (JSON, Retry-After) until then."""
    readiness: Readiness = request.app.state.readiness
    if not readiness.ready:
        raise HTTPException(
            503,
            f"the service is not ready: {readiness.reason}",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    return request.app.state.compute


def get_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.cpu_limiter


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]
ComputeDep = Annotated[Compute, Depends(get_compute)]
LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
