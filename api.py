"""EdgeFace verification service: app factory, startup and command line.

python api.py --port 8000 [--host 127.0.0.1] [--model edgeface_s_gamma_05] [--checkpoint-dir DIR]
python api.py --download [--download-url URL]   # fetch the model's missing checkpoint, then serve

The server listens at once; the model loads and passes a self-test in the background (/readyz
says when). ``python api.py`` exits with status 2 and the reason if that fails.
"""

import argparse
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import uvicorn
from fastapi import FastAPI

from backbones.catalog import CheckpointError, check_checkpoint_file, checkpoint_path, model_info
from backbones.download import DownloadError, download_checkpoint
from gallery import GalleryError
from service.auth import APIKeyAuth
from service.compute import load_compute
from service.errors import install_error_handlers
from service.gallery_routes import open_service_gallery
from service.gallery_routes import router as gallery_router
from service.gallery_schemas import REQUEST_MODELS as GALLERY_REQUEST_MODELS
from service.inputs import base64_length
from service.jobs import Compute
from service.limits import BodySizeLimit
from service.observability import Metrics, RequestObserver
from service.openapi import install_openapi
from service.ops import router as ops_router
from service.pages import install_pages
from service.routes import REQUEST_MODELS
from service.routes import router as api_router
from service.settings import Settings
from service.startup import FailureHandler, Loader, Readiness, start_loading
from verification.thresholds import Thresholds, model_thresholds

log = logging.getLogger("edgeface")

# Multipart framing, a data: URI prefix, JSON escapes ("\/") and the small fields, for two images.
_BODY_OVERHEAD_BYTES = 1024 * 1024
CANNOT_START = 2
DOWNLOAD_COMMAND = "python api.py --download"


def body_limit(settings: Settings) -> int:
    """Largest request body: two images at the byte limit, base64-encoded (4/3 larger)."""
    return 2 * base64_length(settings.max_upload_bytes) + _BODY_OVERHEAD_BYTES


def thresholds_line(thresholds: Thresholds) -> str:
    """Which table the default thresholds come from (a trained checkpoint may bring its own)."""
    if thresholds.source is None:
        return f"no calibrated thresholds for {thresholds.model}: requests must give a threshold"
    return f"default thresholds for {thresholds.model} from {thresholds.source}"


def log_failure(reason: str) -> None:
    log.error("startup failed; /readyz answers 503: %s", reason)


def create_app(
    settings: Settings | None = None,
    compute: Compute | None = None,
    load: Loader = load_compute,
    on_load_failure: FailureHandler = log_failure,
) -> FastAPI:
    """The app. It loads the model (unless ``compute`` is given) and self-tests it in the
    background after startup; ``on_load_failure(reason)`` is called if either fails."""
    settings = settings or Settings()
    metrics = Metrics.create()

    def ready(prepared: Compute, load_seconds: float | None) -> None:
        app.state.compute = prepared
        if load_seconds is not None:
            metrics.model_load_seconds.set(load_seconds)
            log.info("loaded %s in %.1f s", settings.model, load_seconds)
        try:  # read once: the table a request's default threshold comes from never changes
            app.state.thresholds = model_thresholds(settings.model, settings.checkpoint_dir)
            # the gallery must hold this model's faces (or none) before any request uses it
            app.state.gallery = open_service_gallery(settings)
        except (GalleryError, OSError, ValueError) as exc:
            # OSError: the checkpoint to hash, the data dir; ValueError: a broken thresholds.json
            failed(str(exc))
            return
        log.info("%s", thresholds_line(app.state.thresholds))
        app.state.readiness.succeed()
        log.info("ready: self-test passed")

    def failed(reason: str) -> None:
        app.state.readiness.fail(reason)
        on_load_failure(reason)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.cpu_limiter = anyio.CapacityLimiter(settings.workers)
        start_loading(settings, compute, load, ready, failed)
        yield
        if app.state.compute is not None:
            app.state.compute.close()
        if app.state.gallery is not None:
            app.state.gallery.close()

    app = FastAPI(
        title="EdgeFace verification",
        version="0.1.0",
        summary="Face verification with EdgeFace embeddings and MTCNN alignment, on the CPU.",
        lifespan=lifespan,
        docs_url=None,  # served by service.pages
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.compute = None
    app.state.gallery = None
    app.state.thresholds = None
    app.state.readiness = Readiness()
    app.state.metrics = metrics
    # Added innermost first: observe everything, refuse a missing key before the size check.
    app.add_middleware(BodySizeLimit, max_bytes=body_limit(settings))
    if settings.api_key is not None:
        app.add_middleware(APIKeyAuth, api_key=settings.api_key)
    app.add_middleware(RequestObserver, metrics=metrics, router=app.router)
    install_error_handlers(app)
    install_pages(app)
    app.include_router(api_router)
    app.include_router(gallery_router)
    app.include_router(ops_router)
    request_models = REQUEST_MODELS + GALLERY_REQUEST_MODELS
    install_openapi(app, request_models, api_key=settings.api_key is not None)
    return app


@dataclass(frozen=True)
class Download:
    """``--download``: fetch a missing checkpoint before starting (from ``urls``, else the
    model's official sources)."""

    urls: list[str] | None = None


def parse_args(argv: list[str] | None) -> tuple[Settings, Download | None]:
    parser = argparse.ArgumentParser(description="EdgeFace face-verification HTTP service")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model", help="EdgeFace variant (default edgeface_s_gamma_05)")
    parser.add_argument("--checkpoint-dir", help="folder with <model>.pt files")
    parser.add_argument(
        "--download",
        action="store_true",
        help="when <model>.pt is missing or incomplete, download it (SHA-256-checked), then serve",
    )
    parser.add_argument(
        "--download-url",
        action="append",
        metavar="URL",
        help="with --download: fetch <URL>/<model>.pt (repeat for fallbacks; default: the "
        "official sources)",
    )
    args = parser.parse_args(argv)
    if args.download_url and not args.download:
        parser.error("--download-url needs --download")
    download = Download(args.download_url) if args.download else None
    options = vars(args)
    del options["download"], options["download_url"]
    overrides = {k: v for k, v in options.items() if v is not None}
    return Settings(**overrides), download


def preflight(settings: Settings, download: Download | None = None) -> None:
    """Refuse an unknown model, a missing file or one that is not a (complete) checkpoint
    archive before listening on the port, in milliseconds; with ``download``, fetch such a
    file first.

    Loading the weights takes seconds and happens in the background; the rarer failures found
    there (tensors that do not fit the model, a failed self-test) stop the server from there.
    """
    model_info(settings.model)
    path = checkpoint_path(settings.model, settings.checkpoint_dir)
    try:
        check_checkpoint_file(path, settings.model)
        return
    except CheckpointError as exc:
        if download is None:
            raise CheckpointError(
                f"{exc}; or let the service fetch it: add --download ({DOWNLOAD_COMMAND})"
            ) from None
    # Only a missing or incomplete file is fetched: a complete one may be the user's own
    # (trained) weights, which a download must never replace.
    download_checkpoint(settings.model, settings.checkpoint_dir, download.urls)
    check_checkpoint_file(path, settings.model)


def main(argv: list[str] | None = None) -> int:
    settings, download = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        preflight(settings, download)
    except (CheckpointError, DownloadError, OSError, ValueError) as exc:
        print(f"edgeface: cannot start: {exc}", file=sys.stderr)
        return CANNOT_START
    failures: list[str] = []

    def stop(reason: str) -> None:
        failures.append(reason)
        print(f"edgeface: cannot start: {reason}", file=sys.stderr, flush=True)
        server.should_exit = True

    app = create_app(settings, on_load_failure=stop)
    log.info(
        "serving %s from %s; API key %s",
        settings.model,
        settings.checkpoint_dir,
        "required" if settings.api_key else "off",
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # RequestObserver logs one line per request
    )
    server = uvicorn.Server(config)
    server.run()
    return CANNOT_START if failures else 0


if __name__ == "__main__":
    sys.exit(main())
