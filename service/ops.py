"""Routes for operators: liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.dependencies import MetricsDep, ReadinessDep, SettingsDep
from service.schemas import HealthResponse, ReadinessResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> HealthResponse:
    """200 whenever the process answers, even while the model is loading. Never needs a key."""
    return HealthResponse()


@router.get(
    "/readyz",
    summary="Readiness: the model is loaded and passed its self-test",
    response_model=ReadinessResponse,
    response_model_exclude_none=True,
    responses={503: {"model": ReadinessResponse, "description": "Loading, or startup failed"}},
)
async def readyz(readiness: ReadinessDep, settings: SettingsDep) -> JSONResponse:
    """200 once the model and the detector loaded and a self-test embedding was finite and 512-d;
    503 with ``status`` ``loading`` or ``failed`` and the ``reason`` before that."""
    answer = ReadinessResponse(
        status=readiness.status, model=settings.model, reason=readiness.reason
    )
    status = 200 if readiness.ready else 503
    return JSONResponse(answer.model_dump(exclude_none=True), status_code=status)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Requests by route and status, latency by route, faces detected, model load seconds and
    requests in flight, in the Prometheus text format. Needs the API key when one is set."""
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
