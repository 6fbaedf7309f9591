"""HTTP routes. Each one reads the request, hands CPU work to the thread pool and shapes JSON."""

import html
import logging
from functools import partial
from typing import Annotated

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Form, Request, UploadFile
from fastapi.responses import HTMLResponse

from service.schemas import ErrorResponse, FaceInfo, VerifyForm, VerifyResponse
from service.settings import Settings
from verification import FaceEmbedding, ImageTooLargeError, Verifier

log = logging.getLogger("edgeface.service")
router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorResponse, "description": "An upload is not a readable image"},
    413: {"model": ErrorResponse, "description": "An upload exceeds the byte or pixel limit"},
    422: {"model": ErrorResponse, "description": "No face found, or an invalid field"},
}


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_verifier(request: Request) -> Verifier:
    return request.app.state.verifier


def get_limiter(request: Request) -> anyio.CapacityLimiter:
    return request.app.state.cpu_limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
VerifierDep = Annotated[Verifier, Depends(get_verifier)]
LimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_limiter)]


async def read_upload(upload: UploadFile, field: str, max_bytes: int) -> bytes:
    if upload.size is not None and upload.size > max_bytes:
        raise ImageTooLargeError(
            field, f"the file has {upload.size} bytes, over the limit of {max_bytes} bytes"
        )
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLargeError(field, f"the file is over the limit of {max_bytes} bytes")
    return data


def face_info(found: FaceEmbedding) -> FaceInfo:
    face = found.face
    assert face is not None  # the HTTP pipeline never uses the no-face fallback
    return FaceInfo(
        box=[round(float(v), 2) for v in face.box],
        score=round(float(face.score), 5),
        landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        face_count=found.face_count,
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(settings: SettingsDep) -> str:
    model = html.escape(settings.model)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EdgeFace verification</title></head>
<body>
<h1>EdgeFace face verification</h1>
<p>Model: <code>{model}</code>. POST two photos to <code>/verify</code> to learn whether they
show the same person.</p>
<p>API documentation: <a href="/docs">/docs</a> (Swagger UI), <a href="/redoc">/redoc</a>.</p>
</body></html>"""


@router.post(
    "/verify",
    response_model=VerifyResponse,
    responses=ERROR_RESPONSES,
    summary="Do two photos show the same person?",
)
async def verify(
    form: Annotated[VerifyForm, Form(media_type="multipart/form-data")],
    settings: SettingsDep,
    verifier: VerifierDep,
    limiter: LimiterDep,
) -> VerifyResponse:
    """Detects the largest face in each photo, embeds both and compares them with ``metric``."""
    image1 = await read_upload(form.image1, "image1", settings.max_upload_bytes)
    image2 = await read_upload(form.image2, "image2", settings.max_upload_bytes)
    job = partial(verifier.verify, image1, image2, form.metric, form.threshold)
    result = await to_thread.run_sync(job, limiter=limiter)
    first, second = result.faces
    return VerifyResponse(
        match=result.match,
        distance=round(result.distance, 6),
        threshold=result.threshold,
        metric=result.metric,
        model=result.model,
        image1=face_info(first),
        image2=face_info(second),
    )
