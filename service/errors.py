"""One JSON error shape for every failure, and the HTTP status of each kind of bad input.

Handlers never put a traceback or the uploaded data in a response.
"""

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from gallery import (
    DuplicateFaceError,
    FaceNotFoundError,
    InvalidCursorError,
    InvalidMetadataError,
    InvalidSubjectIdError,
    LowQualityError,
    SubjectExistsError,
    SubjectNotFoundError,
)
from verification import (
    ImageTooLargeError,
    InputError,
    InvalidImageError,
    NoFaceError,
    NoThresholdError,
    ThresholdOptionError,
    UnknownMetricError,
)

log = logging.getLogger("edgeface.service")


class InvalidBase64Error(InputError):
    """A JSON image string is neither base64 nor a base64 ``data:`` URI."""


class InvalidJSONError(InputError):
    """A JSON body that does not parse."""


STATUS_AND_CODE: dict[type[InputError], tuple[int, str]] = {
    InvalidBase64Error: (400, "invalid_base64"),
    InvalidJSONError: (400, "invalid_json"),
    InvalidImageError: (400, "invalid_image"),
    ImageTooLargeError: (413, "too_large"),
    NoFaceError: (422, "no_face"),
    UnknownMetricError: (422, "unknown_metric"),
    NoThresholdError: (422, "no_threshold"),
    ThresholdOptionError: (422, "invalid_request"),
    SubjectNotFoundError: (404, "unknown_subject"),
    FaceNotFoundError: (404, "unknown_face"),
    SubjectExistsError: (409, "subject_exists"),
    DuplicateFaceError: (409, "duplicate_face"),
    InvalidSubjectIdError: (422, "invalid_subject"),
    InvalidMetadataError: (422, "invalid_metadata"),
    InvalidCursorError: (422, "invalid_cursor"),
    LowQualityError: (422, "low_quality"),
}


def error_json(status: int, code: str, detail: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"detail": detail, "code": code, "field": field}
    )


def _field_name(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _input_error(request: Request, exc: InputError) -> JSONResponse:
    status, code = next(
        (v for cls, v in STATUS_AND_CODE.items() if isinstance(exc, cls)), (400, "bad_request")
    )
    return error_json(status, code, str(exc), exc.field)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [
        (_field_name(tuple(e.get("loc", ()))), e.get("msg", "invalid")) for e in exc.errors()
    ]
    detail = "; ".join(f"{field}: {msg}" if field else msg for field, msg in problems)
    return error_json(422, "invalid_request", detail, problems[0][0] if problems else None)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {
        400: "bad_request",
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
        415: "unsupported_media_type",
        503: "not_ready",
    }
    response = error_json(exc.status_code, code.get(exc.status_code, "error"), str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_json(500, "internal_error", "internal error; the service logged the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def send_error_json(
    send: Send, status: int, code: str, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """The error shape of ``error_json`` sent straight from ASGI middleware, before routing."""
    body = json.dumps({"detail": detail, "code": code, "field": None}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
