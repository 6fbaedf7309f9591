"""Schemathesis against /openapi.json of the real server: generated requests for every operation.

Every answer must be below 500 and match what the document declares for it: a listed status,
its content type and its schema. Random bytes are never images, so the fuzzing mostly reaches
the input checks; a second pass puts a real photo into the generated /verify and /embed bodies
so the generated options (metric, threshold, max_faces, return_crops) reach the model, and a
few fixed cases cover each documented outcome (200, 400, 413, 415, 422) with real inputs.

The server runs without an API key and with a 1 MB upload limit (so the 413 case is cheap).
EDGEFACE_FUZZ_EXAMPLES sets the generated cases per operation (default 30).
"""

import base64
import io
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from PIL import Image
from schemathesis import GenerationMode, checks

from tests.server import running_server

MAX_UPLOAD_BYTES = 1024 * 1024
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Per operation. Bad inputs are answered in milliseconds; the real-photo pass runs the model.
# 30 keeps the default suite inside its time budget; EDGEFACE_FUZZ_EXAMPLES=1000 fuzzes deeper.
FUZZ_EXAMPLES = int(os.environ.get("EDGEFACE_FUZZ_EXAMPLES", "30"))
PHOTO_EXAMPLES = 10
TIMEOUT_S = 120
IMAGE_FIELDS = ("image", "image1", "image2")
HYPOTHESIS = {
    "deadline": None,
    "database": None,  # nothing written into the repository; every run explores afresh
    "suppress_health_check": list(HealthCheck),
}


@pytest.fixture(scope="module")
def api_schema(checkpoint_dir):
    env = {"EDGEFACE_API_KEY": "", "EDGEFACE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES)}
    with running_server(checkpoint_dir, env=env) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


@pytest.fixture(scope="module")
def small_portrait(photos_dir) -> bytes:
    """A portrait at 200 px: the detector runs in a fraction of the full size's time."""
    with Image.open(photos_dir / "005_02ab3a1b.jpg") as image:
        image = image.convert("RGB")
        image.thumbnail((200, 200))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, **HYPOTHESIS)
def test_every_operation_conforms(case):
    case.call_and_validate(checks=CHECKS, timeout=TIMEOUT_S)


def with_photo(body: dict, photo: bytes, media_type: str | None) -> dict:
    """``body`` with a real photo in each image field it has (base64 for JSON)."""
    image = photo if media_type == "multipart/form-data" else base64.b64encode(photo).decode()
    return {name: image if name in IMAGE_FIELDS else value for name, value in body.items()}


@schema.include(path_regex="^/(verify|embed)$").parametrize()
@settings(max_examples=PHOTO_EXAMPLES, **HYPOTHESIS)
def test_generated_options_with_a_real_photo(case, small_portrait):
    # Negative cases are the first test's job; here a photo would only hide what made them so.
    if case.meta.generation.mode is GenerationMode.NEGATIVE or not isinstance(case.body, dict):
        return
    case.body = with_photo(case.body, small_portrait, case.media_type)
    response = case.call_and_validate(checks=CHECKS, timeout=TIMEOUT_S)
    # Options the document allows and a photo with a face: the model must answer.
    assert response.status_code == 200, response.text


def test_multipart_threshold_null_as_documented(api_schema, small_portrait):
    # A form has no spelling of null: the document may only offer it if the server takes "null".
    threshold = api_schema.raw_schema["components"]["schemas"]["VerifyForm"]["properties"][
        "threshold"
    ]
    nullable = any(option.get("type") == "null" for option in threshold.get("anyOf", [threshold]))
    body = {"image1": small_portrait, "image2": small_portrait, "threshold": None}
    case = api_schema["/verify"]["POST"].Case(body=body, media_type="multipart/form-data")
    response = case.call_and_validate(checks=CHECKS, timeout=TIMEOUT_S)
    assert not nullable or response.status_code == 200, response.text


def photo_bytes(photos_dir, stem: str) -> bytes:
    return (photos_dir / f"{stem}.jpg").read_bytes()


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def documented_cases(photos_dir) -> list[tuple[str, str, dict, int]]:
    """(path, media type, body, expected status) for each outcome the document lists."""
    alice1 = photo_bytes(photos_dir, "005_02ab3a1b")
    alice2 = photo_bytes(photos_dir, "006_87166f38")
    group = photo_bytes(photos_dir, "office1")
    b64 = base64.b64encode
    multipart, json = "multipart/form-data", "application/json"
    return [
        ("/verify", multipart, {"image1": alice1, "image2": alice2, "return_crops": True}, 200),
        ("/verify", json, {"image1": b64(alice1).decode(), "image2": b64(alice2).decode()}, 200),
        ("/embed", multipart, {"image": group, "max_faces": 0, "return_crops": True}, 200),
        ("/embed", json, {"image": "data:image/jpeg;base64," + b64(alice1).decode()}, 200),
        ("/verify", multipart, {"image1": alice1[: len(alice1) // 2], "image2": alice2}, 400),
        ("/embed", json, {"image": "not base64!"}, 400),
        ("/embed", multipart, {"image": alice1 + b"\0" * MAX_UPLOAD_BYTES}, 413),
        ("/embed", multipart, {"image": blank_png()}, 422),
        ("/verify", json, {"image1": b64(alice1).decode(), "image2": "", "metric": "l1"}, 422),
        ("/embed", json, {"image": b64(alice1).decode(), "max_face": 2}, 422),
        ("/embed", "text/plain", "hello", 415),
    ]


def test_documented_outcomes_conform(api_schema, photos_dir):
    for path, media_type, body, status in documented_cases(photos_dir):
        case = api_schema[path]["POST"].Case(body=body, media_type=media_type)
        response = case.call_and_validate(checks=CHECKS, timeout=TIMEOUT_S)
        assert response.status_code == status, (path, media_type, response.text)
