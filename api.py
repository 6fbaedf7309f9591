"""EdgeFace verification service: app factory, startup and command line.

python api.py --port 8000 [--host 127.0.0.1] [--model edgeface_s_gamma_05] [--checkpoint-dir DIR]
"""

import argparse
import logging
import sys
from contextlib import asynccontextmanager

import anyio
import torch
import uvicorn
from fastapi import FastAPI

from backbones import CheckpointError
from service.errors import install_error_handlers
from service.limits import BodySizeLimit
from service.pages import router as pages_router
from service.routes import router
from service.settings import Settings
from verification import Verifier

log = logging.getLogger("edgeface")

# Two images plus multipart framing and the small form fields.
_FORM_OVERHEAD_BYTES = 1024 * 1024


def load_verifier(settings: Settings) -> Verifier:
    """Load model and detector once; raises CheckpointError with advice when weights are bad."""
    torch.set_num_threads(settings.threads)
    return Verifier.load(settings.model, settings.checkpoint_dir, max_pixels=settings.max_pixels)


def create_app(settings: Settings | None = None, verifier: Verifier | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "verifier", None) is None:
            app.state.verifier = load_verifier(settings)
        app.state.cpu_limiter = anyio.CapacityLimiter(settings.workers)
        yield

    app = FastAPI(
        title="EdgeFace verification",
        version="0.1.0",
        summary="Face verification with EdgeFace embeddings and MTCNN alignment, on the CPU.",
        lifespan=lifespan,
        docs_url=None,  # served by service.pages
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.verifier = verifier
    app.add_middleware(
        BodySizeLimit, max_bytes=2 * settings.max_upload_bytes + _FORM_OVERHEAD_BYTES
    )
    install_error_handlers(app)
    app.include_router(pages_router)
    app.include_router(router)
    return app


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description="EdgeFace face-verification HTTP service")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--model", help="EdgeFace variant (default edgeface_s_gamma_05)")
    parser.add_argument("--checkpoint-dir", help="folder with <model>.pt files")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        verifier = load_verifier(settings)
    except (CheckpointError, ValueError) as exc:
        print(f"edgeface: cannot start: {exc}", file=sys.stderr)
        return 2
    log.info("loaded %s from %s", settings.model, settings.checkpoint_dir)
    uvicorn.run(
        create_app(settings, verifier),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
