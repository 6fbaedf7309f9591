"""Prometheus metrics and the one log line per request.

Labels use the route template (``/verify``), never the raw path, so a client cannot grow the
number of series. Logs carry method, route, status, milliseconds and face counts: never image
bytes, base64 or embeddings.
"""

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("edgeface.access")

UNMATCHED = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds; a verify takes 0.1 to a few seconds on a small CPU, a health check microseconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Metrics:
    """The metrics of one app, in a registry of its own (several apps may share a process)."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    faces_detected: Counter
    model_load_seconds: Gauge
    in_flight: Gauge

    @classmethod
    def create(cls) -> "Metrics":
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            requests=Counter(
                "edgeface_http_requests",
                "HTTP requests answered, by method, route template and status",
                ["method", "route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "edgeface_http_request_duration_seconds",
                "Time from request to the end of the response, by route template",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            faces_detected=Counter(
                "edgeface_faces_detected",
                "Faces the detector found in answered /verify and /embed requests",
                registry=registry,
            ),
            model_load_seconds=Gauge(
                "edgeface_model_load_seconds",
                "Seconds spent loading the model weights and the face detector at startup",
                registry=registry,
            ),
            in_flight=Gauge(
                "edgeface_http_requests_in_flight",
                "HTTP requests being handled now",
                registry=registry,
            ),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes with a path template (routes and mounts), looking into included routers."""
    for route in routes:
        if getattr(route, "path", None):
            yield route
        else:  # FastAPI wraps each included APIRouter; the wrapper has no path of its own
            inner = getattr(route, "original_router", None)
            yield from leaf_routes(getattr(inner, "routes", ()))


def route_template(scope: Scope, router: Router) -> str:
    """The template of the route that served (or would serve) this request."""
    route = scope.get("route")
    if route is None:  # answered before routing, e.g. refused by the API key check
        candidates = leaf_routes(router.routes)
        route = next((r for r in candidates if r.matches(scope)[0] is not Match.NONE), None)
    return getattr(route, "path", None) or UNMATCHED


def format_faces(counts: list[int] | None) -> str:
    return "" if not counts else " faces=" + ",".join(str(c) for c in counts)


class RequestObserver:
    """Pure ASGI middleware: counts, times and logs every HTTP request once."""

    def __init__(self, app: ASGIApp, metrics: Metrics, router: Router) -> None:
        self.app = app
        self.metrics = metrics
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Routes leave face counts in request.state, which is this dict.
        state = scope.setdefault("state", {})
        status = 500  # what the client sees if the app fails before starting a response
        start = perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.in_flight.dec()
            self._record(scope, status, perf_counter() - start, state.get("face_counts"))

    def _record(self, scope: Scope, status: int, seconds: float, faces: list[int] | None) -> None:
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
        route = route_template(scope, self.router)
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(route).observe(seconds)
        if faces:
            self.metrics.faces_detected.inc(sum(faces))
        access_log.info(
            "%s %s %d %.1fms%s", method, route, status, seconds * 1000, format_faces(faces)
        )
