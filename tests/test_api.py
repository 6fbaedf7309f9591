"""The real HTTP service on a loopback port: answers on real photos and every bad-input case."""

import asyncio
import base64
import io
import itertools
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from service.inputs import parse_form
from tests.inprocess import asgi_request
from tests.server import REPO, running_server

SAME = [
    ("005_02ab3a1b", "006_87166f38"),
    ("002_3a2ef5df", "011_7b37bf1f"),
    ("002_3a2ef5df", "013_46b35530"),
    ("011_7b37bf1f", "025_c55c4e11"),
    ("009_fc574624", "011_32193038"),
    ("002_331d0423", "024_bfac5f5b"),
    ("005_8af3cada", "011_da108a07"),
    ("006_9135205d", "030_66bddeb6"),
]
DIFFERENT_PEOPLE = [
    "002_331d0423",
    "002_3a2ef5df",
    "002_6749a2c4",
    "005_02ab3a1b",
    "005_8af3cada",
    "005_9574c208",
    "006_9135205d",
    "009_fc574624",
]
DIFFERENT = list(itertools.combinations(DIFFERENT_PEOPLE, 2))


@pytest.fixture(scope="module")
def server(checkpoint_dir):
    with running_server(checkpoint_dir) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=120) as http:
        yield http


def photo(photos_dir, stem: str) -> bytes:
    return (photos_dir / f"{stem}.jpg").read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def post_verify(client, image1: bytes, image2: bytes, **fields) -> httpx.Response:
    files = {"image1": ("a.jpg", image1, "image/jpeg"), "image2": ("b.jpg", image2, "image/jpeg")}
    return client.post("/verify", files=files, data={k: str(v) for k, v in fields.items()})


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) == {"detail", "code", "field"}
    if field is not None:
        assert body["field"] == field
        assert field in body["detail"]
    return body


def test_index_names_service_and_model(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "EdgeFace" in response.text and "edgeface_s_gamma_05" in response.text
    assert 'href="/docs"' in response.text


def test_openapi_documents_verify_models(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"VerifyForm", "VerifyResponse", "FaceInfo", "ErrorResponse"} <= set(schemas)
    operation = spec["paths"]["/verify"]["post"]
    assert {"200", "400", "413", "422"} <= set(operation["responses"])


@pytest.mark.parametrize("first,second", SAME)
def test_same_person_pairs_match(client, photos_dir, first, second):
    response = post_verify(client, photo(photos_dir, first), photo(photos_dir, second))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["match"] is True
    assert body["distance"] <= body["threshold"]
    assert body["metric"] == "cosine" and body["model"] == "edgeface_s_gamma_05"


@pytest.mark.parametrize("first,second", DIFFERENT)
def test_different_people_do_not_match(client, photos_dir, first, second):
    response = post_verify(client, photo(photos_dir, first), photo(photos_dir, second))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["match"] is False
    assert body["distance"] > body["threshold"]


def test_response_describes_the_faces_used(client, photos_dir):
    image = photo(photos_dir, "005_8af3cada")  # has a second face in the background
    width, height = Image.open(photos_dir / "005_8af3cada.jpg").size
    body = post_verify(client, image, photo(photos_dir, "011_da108a07")).json()
    face = body["image1"]
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= width + 5 and 0 <= y1 < y2 <= height + 5
    assert 0.9 < face["score"] <= 1.0
    assert len(face["landmarks"]) == 5
    for x, y in face["landmarks"]:
        assert x1 - 5 <= x <= x2 + 5 and y1 - 5 <= y <= y2 + 5
    assert face["face_count"] >= 2


@pytest.mark.parametrize("metric", ["cosine", "angular", "euclidean", "euclidean_l2"])
def test_every_metric_decides_with_its_own_threshold(client, photos_dir, metric):
    same = post_verify(
        client, photo(photos_dir, "005_02ab3a1b"), photo(photos_dir, "006_87166f38"), metric=metric
    ).json()
    other = post_verify(
        client, photo(photos_dir, "002_331d0423"), photo(photos_dir, "002_6749a2c4"), metric=metric
    ).json()
    assert same["metric"] == other["metric"] == metric
    assert same["threshold"] == other["threshold"]
    assert same["match"] is True and other["match"] is False


def test_explicit_threshold_is_used(client, photos_dir):
    pair = photo(photos_dir, "005_02ab3a1b"), photo(photos_dir, "006_87166f38")
    strict = post_verify(client, *pair, threshold=0.0).json()
    assert strict["threshold"] == 0.0 and strict["match"] is False
    lenient = post_verify(client, *pair, threshold=1.5).json()
    assert lenient["threshold"] == 1.5 and lenient["match"] is True
    assert strict["distance"] == pytest.approx(lenient["distance"])


def test_not_an_image_is_400_naming_it(client, photos_dir):
    body = assert_error(
        post_verify(client, b"hello, not a picture", photo(photos_dir, "005_02ab3a1b")),
        400,
        "image1",
    )
    assert body["code"] == "invalid_image"


def test_truncated_image_is_400_naming_it(client, photos_dir):
    data = photo(photos_dir, "006_9135205d")
    response = post_verify(client, photo(photos_dir, "005_02ab3a1b"), data[: len(data) // 2])
    assert_error(response, 400, "image2")


def test_empty_file_is_400_naming_it(client, photos_dir):
    assert_error(post_verify(client, photo(photos_dir, "005_02ab3a1b"), b""), 400, "image2")


def test_no_face_is_422_naming_the_image(client, photos_dir):
    blank = png(np.full((300, 300, 3), 128, dtype=np.uint8))
    body = assert_error(
        post_verify(client, blank, photo(photos_dir, "005_02ab3a1b")), 422, "image1"
    )
    assert body["code"] == "no_face"


def test_unknown_metric_is_422(client, photos_dir):
    image = photo(photos_dir, "005_02ab3a1b")
    body = assert_error(post_verify(client, image, image, metric="manhattan"), 422, "metric")
    assert "cosine" in body["detail"]


@pytest.mark.parametrize("threshold", ["-1", "nan", "abc"])
def test_invalid_threshold_is_422(client, photos_dir, threshold):
    image = photo(photos_dir, "005_02ab3a1b")
    assert_error(post_verify(client, image, image, threshold=threshold), 422, "threshold")


def test_empty_threshold_field_means_the_calibrated_one(client, photos_dir):
    image = photo(photos_dir, "005_02ab3a1b")
    default = post_verify(client, image, image).json()["threshold"]
    response = post_verify(client, image, image, threshold="")
    assert response.status_code == 200, response.text
    assert response.json()["threshold"] == default


def test_every_answer_says_which_far_its_threshold_stands_for(client, photos_dir):
    from verification.thresholds import model_thresholds

    table = model_thresholds("edgeface_s_gamma_05")
    first, second = photo(photos_dir, "002_3a2ef5df"), photo(photos_dir, "011_7b37bf1f")
    default = post_verify(client, first, second).json()
    assert default["threshold"] == table.threshold("cosine")
    assert default["far"] == table.far("cosine") and 0 < default["far"] < 0.01
    strict = post_verify(client, first, second, far="1e-5").json()
    assert strict["far"] == 1e-5 and strict["threshold"] == table.at_far("cosine", 1e-5)
    assert strict["threshold"] < table.at_far("cosine", 1e-2) < 1
    as_json = client.post(
        "/verify", json={"image1": b64(first), "image2": b64(second), "far": 0.0001}
    ).json()
    assert as_json["far"] == 1e-4 and as_json["threshold"] == table.at_far("cosine", 1e-4)
    custom = post_verify(client, first, second, threshold="0.5").json()
    assert custom["threshold"] == 0.5 and custom["far"] is None and "crop" not in custom["image1"]


@pytest.mark.parametrize(
    "fields", [{"far": "0.05"}, {"far": "abc"}, {"far": "1e-4", "threshold": "0.5"}]
)
def test_an_uncalibrated_far_or_far_with_threshold_is_422(client, photos_dir, fields):
    image = photo(photos_dir, "005_02ab3a1b")
    assert_error(post_verify(client, image, image, **fields), 422, "far")


def test_missing_image_is_422(client, photos_dir):
    files = {"image1": ("a.jpg", photo(photos_dir, "005_02ab3a1b"), "image/jpeg")}
    assert_error(client.post("/verify", files=files), 422, "image2")


def test_upload_over_the_byte_limit_is_413_naming_it(client, photos_dir):
    big = photo(photos_dir, "005_02ab3a1b") + b"\0" * (10 * 1024 * 1024)
    body = assert_error(post_verify(client, photo(photos_dir, "005_02ab3a1b"), big), 413, "image2")
    assert str(10 * 1024 * 1024) in body["detail"]


def test_request_far_over_the_limit_is_refused_before_reading(client):
    huge = b"\0" * (25 * 1024 * 1024)
    assert_error(post_verify(client, huge, huge), 413)


def test_decompression_bomb_is_413_without_decoding(client, photos_dir):
    # 10000 x 5000 = 50 megapixels, a few kilobytes on the wire.
    bomb = io.BytesIO()
    Image.new("L", (10_000, 5_000)).save(bomb, format="PNG", optimize=True)
    assert len(bomb.getvalue()) < 200_000
    start = time.perf_counter()
    response = post_verify(client, photo(photos_dir, "005_02ab3a1b"), bomb.getvalue())
    body = assert_error(response, 413, "image2")
    assert "40000000" in body["detail"].replace(",", "").replace("_", "")
    assert time.perf_counter() - start < 10


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/nope"), 404)


def test_index_answers_while_a_verify_runs(client, photos_dir):
    # Large images keep the verify busy long enough to see whether the event loop is free.
    big = io.BytesIO()
    Image.open(photos_dir / "office4.jpg").convert("RGB").resize((3000, 2000)).save(big, "JPEG")
    finished: dict[str, float] = {}

    def slow_verify() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=120) as other:
            post_verify(other, big.getvalue(), big.getvalue())
        finished["verify"] = time.perf_counter()

    worker = threading.Thread(target=slow_verify)
    worker.start()
    time.sleep(0.3)
    response = client.get("/")
    finished["index"] = time.perf_counter()
    worker.join()
    assert response.status_code == 200
    assert finished["index"] < finished["verify"]


def test_service_survives_bad_input(client, photos_dir):
    post_verify(client, b"\xff\xd8\xff garbage", b"")
    response = post_verify(
        client, photo(photos_dir, "005_02ab3a1b"), photo(photos_dir, "006_87166f38")
    )
    assert response.status_code == 200 and response.json()["match"] is True


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_startup_without_usable_weights_says_what_to_do(tmp_path, content):
    if content is not None:
        (tmp_path / "edgeface_s_gamma_05.pt").write_bytes(content)
    result = subprocess.run(
        [sys.executable, "api.py", "--port", "1", "--checkpoint-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "edgeface_s_gamma_05.pt" in result.stderr
    assert "python -m backbones.download edgeface_s_gamma_05" in result.stderr
    assert "python api.py --download" in result.stderr
    assert "Traceback" not in result.stderr


def test_multipart_uploads_stay_in_memory(monkeypatch, photos_dir):
    """An upload is never written to disk: Starlette's form parsing would spool each file over
    1 MB to a temporary file (service.inputs.parse_form)."""

    def rollover(self):
        raise AssertionError("an upload was spooled to a temporary file")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", rollover)
    image = photo(photos_dir, "005_02ab3a1b") + b"\0" * (3 * 1024 * 1024)
    request = asgi_request("/embed", files={"image": ("a.jpg", image, "image/jpeg")})

    async def parse():
        form = await parse_form(request, max_files=1)
        try:
            return await form["image"].read()
        finally:
            await form.close()

    assert asyncio.run(parse()) == image
