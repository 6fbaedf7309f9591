"""Reading a request body: multipart uploads or JSON with base64 images, into options and bytes.

Images only ever arrive as bytes in the body. A JSON string is decoded as base64 and nothing
else: it is never fetched as a URL nor opened as a path, whatever it looks like.

Everything that can be refused cheaply is refused here, in the server process, before the job
waits for a worker: invalid base64, sizes over the limits, and uploads whose header shows they
cannot decode (``face_alignment.probe_image``). So bad input never queues behind the CPU work.
"""

import binascii
import math
import sys
from contextlib import aclosing
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi import Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from face_alignment import probe_image
from service.errors import InvalidBase64Error, InvalidJSONError
from service.jobs import Images
from verification import ImageTooLargeError, InputError

Options = TypeVar("Options", bound=BaseModel)
Form = TypeVar("Form", bound=BaseModel)
Body = TypeVar("Body", bound=BaseModel)

MULTIPART = "multipart/form-data"
JSON = "application/json"
_WHITESPACE = str.maketrans("", "", " \t\r\n")
# Uploads this small are checked at once in the event loop: a header probe or base64 of a few KB
# takes microseconds, less than the handoff to a request-parsing thread and back, and the not
# an image, empty and cut-short uploads are small (README, Robustness). Larger ones go to the
# threads, so the event loop never spends long on one request.
INLINE_CHECK_BYTES = 8 * 1024
# Form fields besides the files are a few short words; refuse anything bigger early.
_MAX_FORM_FIELDS = 16
_MAX_FIELD_BYTES = 64 * 1024


def base64_length(raw_bytes: int) -> int:
    """Characters of the padded base64 text of ``raw_bytes`` bytes."""
    return 4 * math.ceil(raw_bytes / 3)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    return kind == JSON or (kind.startswith("application/") and kind.endswith("+json"))


def unsupported(kind: str) -> HTTPException:
    what = f"Content-Type {kind}" if kind else "a request without Content-Type"
    return HTTPException(415, f"{what} is not supported; send {MULTIPART} or {JSON}")


def validation_error(exc: ValidationError) -> RequestValidationError:
    # Without the input: it may be megabytes of base64 and must not reach logs or answers.
    return RequestValidationError(exc.errors(include_url=False, include_input=False))


def base64_decoded_length(payload: str) -> int:
    """Bytes that well-formed base64 ``payload`` (no whitespace) decodes to."""
    padding = 2 if payload.endswith("==") else 1 if payload.endswith("=") else 0
    return len(payload) // 4 * 3 - padding


def decode_base64_image(text: str, field: str, max_bytes: int) -> bytes:
    """The bytes of a base64 string or ``data:...;base64,`` URI (whitespace ignored).

    Runs in the server process, holding the interpreter lock, so every step is C over the text
    and an oversize image is refused from its length, before it is decoded: a 2.8 MB string
    through ``base64.b64decode(validate=True)`` (a regular expression, then the decoder) and a
    translation that removes whitespace held the lock for ~17 ms here, long enough to delay
    every other request's answer (README, Robustness)."""
    payload = text
    if text[:5].lower() == "data:":
        header, comma, payload = text.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise InvalidBase64Error("a data: URI must be data:<type>;base64,<data>", field)
    if any(space in payload for space in " \t\r\n"):
        payload = payload.translate(_WHITESPACE)
    size = base64_decoded_length(payload)
    if size > max_bytes:
        raise ImageTooLargeError(
            f"the image has {size} bytes, over the limit of {max_bytes} bytes", field
        )
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        reason = str(exc).split(":", 1)[0].lower() or "undecodable"
        raise InvalidBase64Error(
            f"not valid base64 ({reason}); send the image's bytes base64-encoded, plain or as "
            f"a data:image/...;base64, URI (URLs and file paths are not accepted)",
            field,
        ) from None
    return data  # strict mode decoded it, so its length is the size checked above


def probe_images(images: Images, max_pixels: int) -> None:
    """``probe_image`` on each image in field order, naming the field of the first refused."""
    for field, data in images.items():
        try:
            probe_image(data, max_pixels)
        except InputError as exc:
            raise exc.with_field(field) from None


def parse_json(
    body: bytes,
    model: type[Options],
    image_fields: tuple[str, ...],
    max_bytes: int,
    max_pixels: int,
) -> tuple[Options, Images]:
    """Validate a JSON body against ``model``, decode its base64 images and probe their
    headers (CPU work)."""
    try:
        options = model.model_validate_json(body)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise InvalidJSONError("the body is not valid JSON") from None
        raise validation_error(exc) from None
    images = {f: decode_base64_image(getattr(options, f), f, max_bytes) for f in image_fields}
    probe_images(images, max_pixels)
    return options, images


async def read_upload(upload: UploadFile, field: str, max_bytes: int) -> bytes:
    if upload.size is not None and upload.size > max_bytes:
        raise ImageTooLargeError(
            f"the file has {upload.size} bytes, over the limit of {max_bytes} bytes", field
        )
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the file is over the limit of {max_bytes} bytes", field)
    return data


async def parse_form(request: Request, max_files: int) -> FormData:
    """The multipart body, every file held in memory.

    ``request.form()`` would spool a file over 1 MB to a temporary file on disk, one thread-pool
    write per chunk: a photo is biometric data and is never written anywhere, and the disk
    writes made an oversize upload wait. ``service.limits.BodySizeLimit`` bounds the memory.
    """
    async with aclosing(request.stream()) as stream:
        parser = MultiPartParser(
            request.headers,
            stream,
            max_files=max_files,
            max_fields=_MAX_FORM_FIELDS,
            max_part_size=_MAX_FIELD_BYTES,
        )
        parser.spool_max_size = sys.maxsize
        try:
            return await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, exc.message) from None


async def read_multipart(
    request: Request, model: type[Options], image_fields: tuple[str, ...], max_bytes: int
) -> tuple[Options, Images]:
    form = await parse_form(request, max_files=len(image_fields))
    try:
        try:
            options = model.model_validate(dict(form))
        except ValidationError as exc:
            raise validation_error(exc) from None
        images = {f: await read_upload(getattr(options, f), f, max_bytes) for f in image_fields}
    finally:
        await form.close()
    return options, images


async def read_images(
    request: Request,
    form_model: type[Form],
    json_model: type[Body],
    image_fields: tuple[str, ...],
    max_bytes: int,
    max_pixels: int,
    limiter: CapacityLimiter,
) -> tuple[Form | Body, Images]:
    """The request's options (a ``form_model`` or ``json_model``) and its images as bytes,
    each of which passed ``probe_image``; the CPU work runs in threads of ``limiter``."""
    kind = media_type(request)
    if kind == MULTIPART:
        options, images = await read_multipart(request, form_model, image_fields, max_bytes)
        if sum(len(data) for data in images.values()) <= INLINE_CHECK_BYTES:
            probe_images(images, max_pixels)
        else:
            await to_thread.run_sync(probe_images, images, max_pixels, limiter=limiter)
        return options, images
    if is_json(kind):
        body = await request.body()
        if len(body) <= INLINE_CHECK_BYTES:
            return parse_json(body, json_model, image_fields, max_bytes, max_pixels)
        return await to_thread.run_sync(
            parse_json, body, json_model, image_fields, max_bytes, max_pixels, limiter=limiter
        )
    raise unsupported(kind)
