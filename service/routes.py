"""The API routes. Each reads the body, hands the CPU work to the ``Compute`` (threads or worker
processes) and returns the answer shaped by ``verification.answers`` (the command line prints
the same dicts)."""

from fastapi import APIRouter, Request

from service.dependencies import ComputeDep, LimiterDep, SettingsDep
from service.inputs import read_images
from service.jobs import job_options
from service.openapi import request_body
from service.schemas import (
    EmbedForm,
    EmbedJSON,
    EmbedResponse,
    ErrorResponse,
    VerifyForm,
    VerifyJSON,
    VerifyResponse,
)
from verification.answers import face_counts

router = APIRouter()

REQUEST_MODELS = (VerifyForm, VerifyJSON, EmbedForm, EmbedJSON)
ERROR_RESPONSES: dict[int | str, dict] = {
    400: {
        "model": ErrorResponse,
        "description": "An image is not readable (or not valid base64); the body is not JSON",
    },
    413: {"model": ErrorResponse, "description": "An image exceeds the byte or pixel limit"},
    415: {"model": ErrorResponse, "description": "The body is neither multipart nor JSON"},
    422: {"model": ErrorResponse, "description": "No face found, or an invalid field"},
    503: {"model": ErrorResponse, "description": "The model is still loading"},
}


@router.post(
    "/verify",
    response_model=VerifyResponse,
    # Unset, not None: a crop nobody asked for is left out, an uncalibrated far is null.
    response_model_exclude_unset=True,
    responses=ERROR_RESPONSES,
    summary="Do two photos show the same person?",
    openapi_extra=request_body(VerifyForm, VerifyJSON),
)
async def verify(
    request: Request, settings: SettingsDep, compute: ComputeDep, limiter: LimiterDep
) -> VerifyResponse:
    """Detects the chosen face in each photo (``face``: the largest, or the one nearest the
    centre), embeds both and compares them with ``metric``.

    Send multipart/form-data (files) or application/json (base64 strings) with the same fields.
    """
    options, images = await read_images(
        request,
        VerifyForm,
        VerifyJSON,
        ("image1", "image2"),
        settings.max_upload_bytes,
        settings.max_pixels,
        limiter,
    )
    answer = await compute.run("verify", images, job_options(options))
    request.state.face_counts = face_counts(answer)
    return VerifyResponse.model_validate(answer)


@router.post(
    "/embed",
    response_model=EmbedResponse,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    summary="The embedding of every face in a photo",
    openapi_extra=request_body(EmbedForm, EmbedJSON),
)
async def embed(
    request: Request, settings: SettingsDep, compute: ComputeDep, limiter: LimiterDep
) -> EmbedResponse:
    """Detects the faces, largest first, and returns up to ``max_faces`` of them (0: all), each
    with its box, score, landmarks and L2-normalised 512-d embedding.

    Send multipart/form-data (a file) or application/json (a base64 string).
    """
    options, images = await read_images(
        request,
        EmbedForm,
        EmbedJSON,
        ("image",),
        settings.max_upload_bytes,
        settings.max_pixels,
        limiter,
    )
    answer = await compute.run("embed", images, job_options(options))
    request.state.face_counts = face_counts(answer)
    return EmbedResponse.model_validate(answer)
