"""Operations: /healthz, /readyz and startup, /metrics, the API key and the request log.

Most tests use one real server started with EDGEFACE_API_KEY; the startup states (loading,
failed) are driven in-process with a loader the test controls.
"""

import base64
import re
import threading
import time
import uuid

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from backbones import CheckpointError
from service.compute import ThreadCompute
from service.settings import Settings
from tests.server import started_server

KEY = f"test-key-{uuid.uuid4().hex}"
PORTRAIT = "005_02ab3a1b"
SAME_PERSON = ("005_02ab3a1b", "006_87166f38")
METRIC_NAMES = (
    "edgeface_http_requests_total",
    "edgeface_http_request_duration_seconds",
    "edgeface_faces_detected_total",
    "edgeface_model_load_seconds",
    "edgeface_http_requests_in_flight",
)


@pytest.fixture(scope="module")
def server(checkpoint_dir):
    with started_server(checkpoint_dir, env={"EDGEFACE_API_KEY": KEY}) as running:
        yield running


@pytest.fixture(scope="module")
def anonymous(server):
    with httpx.Client(base_url=server.base, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base, timeout=120, headers={"X-API-Key": KEY}) as http:
        yield http


def photo(photos_dir, stem: str) -> bytes:
    return (photos_dir / f"{stem}.jpg").read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def verify_files(photos_dir) -> dict:
    first, second = (photo(photos_dir, stem) for stem in SAME_PERSON)
    return {"image1": ("a.jpg", first, "image/jpeg"), "image2": ("b.jpg", second, "image/jpeg")}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text (0 when the series does not exist yet)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert set(body) == {"detail", "code", "field"} and body["code"] == "unauthorized"
    assert "X-API-Key" in body["detail"]
    assert KEY not in response.text


# Health and readiness


def test_healthz_is_200(anonymous):
    response = anonymous.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_200_after_startup_without_a_reason(anonymous):
    response = anonymous.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": "edgeface_s_gamma_05"}


class NaNModel:
    """A verifier whose network returns NaN: the startup self-test must catch it."""

    model_name = "edgeface_s_gamma_05"

    def detect(self, image, timings=None):
        return []

    def embed(self, crops, timings=None):
        return np.full((len(crops), 512), np.nan, dtype=np.float32)


def wait_for_status(http: TestClient, status: str, timeout: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = http.get("/readyz")
        if response.json()["status"] == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_readyz_says_loading_then_ok(checkpoint_dir, verifier, photos_dir):
    gate = threading.Event()

    def slow_load(settings: Settings):
        assert gate.wait(120)
        return ThreadCompute(verifier)

    app = create_app(Settings(checkpoint_dir=checkpoint_dir), load=slow_load)
    with TestClient(app) as http:
        loading = http.get("/readyz")
        assert loading.status_code == 503
        assert loading.json()["status"] == "loading" and loading.json()["reason"]
        assert http.get("/healthz").status_code == 200
        refused = http.post("/verify", files=verify_files(photos_dir))
        assert refused.status_code == 503 and refused.json()["code"] == "not_ready"
        assert refused.headers["retry-after"]
        gate.set()
        ready = wait_for_status(http, "ok")
        assert ready.status_code == 200 and "reason" not in ready.json()
        assert http.post("/verify", files=verify_files(photos_dir)).json()["match"] is True
        assert sample(http.get("/metrics").text, "edgeface_model_load_seconds") > 0


def test_readyz_says_why_loading_failed(checkpoint_dir):
    def missing(settings: Settings):
        raise CheckpointError("checkpoint edgeface_s_gamma_05.pt not found in /nowhere")

    reasons: list[str] = []
    app = create_app(Settings(), load=missing, on_load_failure=reasons.append)
    with TestClient(app) as http:
        failed = wait_for_status(http, "failed")
        assert failed.status_code == 503
        assert "edgeface_s_gamma_05.pt not found" in failed.json()["reason"]
        assert http.get("/healthz").status_code == 200
    assert reasons == [failed.json()["reason"]]


def test_readyz_fails_when_the_self_test_gives_nan():
    app = create_app(
        Settings(), compute=ThreadCompute(NaNModel()), on_load_failure=lambda reason: None
    )
    with TestClient(app) as http:
        failed = wait_for_status(http, "failed")
        assert failed.status_code == 503 and "non-finite" in failed.json()["reason"]


def test_each_app_has_its_own_metrics():
    apps = [create_app(Settings(), load=lambda s: ThreadCompute(NaNModel())) for _ in range(2)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        for _ in range(3):
            first.get("/healthz")
        labels = {"method": "GET", "route": "/healthz", "status": "200"}
        assert sample(first.get("/metrics").text, "edgeface_http_requests_total", **labels) == 3
        assert sample(second.get("/metrics").text, "edgeface_http_requests_total", **labels) == 0


# Metrics


def test_metrics_names_and_counts_a_request(client, photos_dir):
    before = client.get("/metrics")
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    for name in METRIC_NAMES:
        assert name in before.text
    labels = {"method": "POST", "route": "/embed", "status": "200"}
    answer = client.post(
        "/embed", json={"image": b64(photo(photos_dir, "005_8af3cada")), "max_faces": 0}
    )
    assert answer.status_code == 200
    after = client.get("/metrics").text
    requests = "edgeface_http_requests_total"
    assert sample(after, requests, **labels) == sample(before.text, requests, **labels) + 1
    faces = "edgeface_faces_detected_total"
    assert sample(after, faces) == sample(before.text, faces) + answer.json()["face_count"]
    count = "edgeface_http_request_duration_seconds_count"
    assert sample(after, count, route="/embed") == sample(before.text, count, route="/embed") + 1
    assert sample(after, "edgeface_model_load_seconds") > 0
    assert sample(after, "edgeface_http_requests_in_flight") >= 1  # this scrape


def test_metrics_label_routes_not_raw_paths(client, anonymous):
    for path in ("/no/such/page", "/another/unknown/path"):
        assert client.get(path).status_code == 404
    anonymous.get("/metrics")
    text = client.get("/metrics").text
    assert "/no/such/page" not in text and "/another/unknown/path" not in text
    assert sample(text, "edgeface_http_requests_total", route="unmatched", status="404") >= 2
    assert sample(text, "edgeface_http_requests_total", route="/metrics", status="401") >= 1


# API key


@pytest.mark.parametrize(
    "method,path", [("POST", "/verify"), ("POST", "/embed"), ("GET", "/metrics"), ("GET", "/nope")]
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}],
)
def test_key_is_required(anonymous, method, path, headers):
    assert_unauthorized(anonymous.request(method, path, headers=headers))


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}],
)
def test_either_header_form_is_accepted(anonymous, headers):
    assert anonymous.get("/metrics", headers=headers).status_code == 200
    # Past the key check to the route itself: an empty image is its own 400.
    response = anonymous.post("/embed", json={"image": ""}, headers=headers)
    assert response.status_code == 400 and response.json()["code"] == "invalid_image"


def test_a_keyed_verify_answers(client, photos_dir):
    response = client.post("/verify", files=verify_files(photos_dir))
    assert response.status_code == 200 and response.json()["match"] is True


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"])
def test_public_pages_need_no_key(anonymous, path):
    assert anonymous.get(path).status_code == 200


def test_docs_assets_need_no_key(anonymous):
    for path in ("/static/docs/swagger-ui.css", "/static/demo.js"):
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get("/static/no-such-file.js").status_code == 404


def test_openapi_declares_the_key(anonymous):
    spec = anonymous.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"APIKeyHeader", "BearerAuth"}
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    for path in ("/verify", "/embed"):
        operation = spec["paths"][path]["post"]
        assert operation["security"] and "401" in operation["responses"]
        body = operation["requestBody"]["content"]
        assert set(body) == {"multipart/form-data", "application/json"}
    assert spec["paths"]["/metrics"]["get"]["security"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


# Logs


def wait_for_log(server, pattern: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return log


def test_one_log_line_per_request_without_images_or_embeddings(server, client, photos_dir):
    first, second = (photo(photos_dir, stem) for stem in SAME_PERSON)
    group = photo(photos_dir, "005_8af3cada")
    assert client.post("/verify", files=verify_files(photos_dir)).status_code == 200
    as_json = {"image1": b64(first), "image2": b64(second), "return_crops": True}
    assert client.post("/verify", json=as_json).status_code == 200
    embedded = client.post("/embed", json={"image": b64(group), "max_faces": 0}).json()
    client.post("/embed", files={"image": ("p.jpg", first, "image/jpeg")})
    client.post("/embed", json={"image": "not base64!" + b64(first)})
    marker = f"/marker-{uuid.uuid4().hex}"
    client.get(marker)

    log = wait_for_log(server, r"GET unmatched 404")
    assert re.search(r"^INFO edgeface\.access: POST /verify 200 [\d.]+ms faces=1,1$", log, re.M)
    embed_line = rf"POST /embed 200 [\d.]+ms faces={embedded['face_count']}$"
    assert re.search(embed_line, log, re.M)
    assert re.search(r"POST /embed 400 [\d.]+ms$", log, re.M)
    assert marker not in log  # routes, not raw paths
    assert KEY not in log
    # Any 40-character run of an uploaded image's base64 (paths in the startup lines are
    # also long runs of base64's alphabet, so a bare pattern would flag them).
    for image in (first, second, group):
        encoded = b64(image)
        windows = {encoded[i : i + 40] for i in range(0, len(encoded) - 40, 997)}
        assert not any(window in log for window in windows), "base64 in the log"
    assert not re.search(r"[A-Za-z0-9+]{40,}", log), "base64-like run in the log"
    values = [str(v) for face in embedded["faces"] for v in face["embedding"]]
    leaked = [v for v in values if len(v) >= 8 and v in log]
    assert not leaked, f"embedding values in the log: {leaked[:5]}"
