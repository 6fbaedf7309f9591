"""HTTP routes. Each one reads the request, hands CPU work to the thread pool and shapes JSON."""

import logging
from functools import partial
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Form, UploadFile

from service.dependencies import LimiterDep, SettingsDep, VerifierDep
from service.schemas import ErrorResponse, FaceInfo, VerifyForm, VerifyResponse
from verification import FaceEmbedding, ImageTooLargeError

log = logging.getLogger("edgeface.service")
router = APIRouter()

ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorResponse, "description": "An upload is not a readable image"},
    413: {"model": ErrorResponse, "description": "An upload exceeds the byte or pixel limit"},
    422: {"model": ErrorResponse, "description": "No face found, or an invalid field"},
}


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
