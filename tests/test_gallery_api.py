"""The gallery over HTTP: a real server (python api.py) on loopback with real photos, behind an
API key, on a SQLite gallery; and the startup refusal of a gallery bound to other weights."""

import base64
import io
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.server import free_port
from gallery import Gallery
from tests.server import REPO, running_server
from verification.thresholds import model_thresholds

KEY = "gallery-test-key"
PERSON = ["002_3a2ef5df", "011_7b37bf1f", "013_46b35530", "025_c55c4e11"]  # one person
STRANGER = "009_fc574624"  # none of the people enrolled below


@pytest.fixture(scope="module")
def client(checkpoint_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery-api")
    env = {
        "EDGEFACE_API_KEY": KEY,
        "EDGEFACE_GALLERY_URL": f"sqlite:///{folder}/gallery.db",
        "EDGEFACE_WORKERS": "1",
    }
    with (
        running_server(checkpoint_dir, env) as base,
        httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as http,
    ):
        yield http


def photo(photos_dir, name: str) -> bytes:
    return (photos_dir / f"{name}.jpg").read_bytes()


def enroll(client, subject: str, data: bytes, create: bool = True) -> httpx.Response:
    files = {"image": ("face.jpg", data, "image/jpeg")}
    form = {"create_subject": "true" if create else "false"}
    return client.post(f"/gallery/subjects/{subject}/faces", files=files, data=form)


def identify(client, data: bytes, **options) -> dict:
    body = {"image": base64.b64encode(data).decode(), **options}
    response = client.post("/gallery/identify", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["detail"]
    if field is not None:
        assert body["field"] == field
    assert "Traceback" not in response.text


def test_subjects_crud_and_refusals(client):
    created = client.post("/gallery/subjects", json={"subject": "ana", "metadata": {"n": 1}})
    assert created.status_code == 201 and created.json()["face_count"] == 0
    assert_error(client.post("/gallery/subjects", json={"subject": "ana"}), 409, "subject_exists")
    bad = client.post("/gallery/subjects", json={"subject": "../../etc/passwd"})
    assert_error(bad, 422, "invalid_subject", "subject")
    assert_error(client.get("/gallery/subjects/a'b"), 422, "invalid_subject", "subject")
    listed = client.post("/gallery/subjects", json={"subject": "x", "metadata": [1, 2]})
    assert_error(listed, 422, "invalid_request", "metadata")
    big = client.post("/gallery/subjects", json={"subject": "x", "metadata": {"a": "b" * 5000}})
    assert_error(big, 422, "invalid_metadata", "metadata")
    assert_error(client.get("/gallery/subjects/nobody"), 404, "unknown_subject", "subject")
    patched = client.patch("/gallery/subjects/ana", json={"metadata": {"n": 2}})
    assert patched.status_code == 200 and patched.json()["metadata"] == {"n": 2}
    for name in ["bo", "cy", "di"]:
        assert client.post("/gallery/subjects", json={"subject": name}).status_code == 201
    names, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/gallery/subjects", params=params).json()
        names += [s["subject"] for s in page["subjects"]]
        if (cursor := page.get("next_cursor")) is None:
            break
    assert names == sorted(names) and {"ana", "bo", "cy", "di"} <= set(names)
    assert_error(client.get("/gallery/subjects", params={"cursor": "!!"}), 422, "invalid_cursor")
    assert client.delete("/gallery/subjects/ana").status_code == 204
    assert_error(client.delete("/gallery/subjects/ana"), 404, "unknown_subject")
    unauthorized = httpx.post(f"{client.base_url}/gallery/subjects", json={"subject": "q"})
    assert unauthorized.status_code == 401


def test_enroll_identify_verify_delete(client, photos_dir, checkpoint_dir):
    first = enroll(client, "person", photo(photos_dir, PERSON[0]))
    assert first.status_code == 201, first.text
    face_id = first.json()["face"]["face_id"]
    again = enroll(client, "person", photo(photos_dir, PERSON[0]))
    assert_error(again, 409, "duplicate_face")
    assert face_id in again.json()["detail"]
    # JSON with base64, like /verify.
    body = {"image": base64.b64encode(photo(photos_dir, PERSON[1])).decode()}
    second = client.post("/gallery/subjects/person/faces", json=body)
    assert second.status_code == 201, second.text
    missing = enroll(client, "nobody-here", photo(photos_dir, PERSON[2]), create=False)
    assert_error(missing, 404, "unknown_subject")
    for name in ["002_331d0423", "005_02ab3a1b", "005_8af3cada"]:
        assert enroll(client, f"p{name}", photo(photos_dir, name)).status_code == 201

    answer = identify(client, photo(photos_dir, PERSON[3]), top_k=3)
    calibrated = model_thresholds("edgeface_s_gamma_05", checkpoint_dir).at_far("cosine", 1e-4)
    assert answer["threshold"] == calibrated and answer["far"] == 1e-4
    [face] = answer["faces"]
    subjects = [c["subject"] for c in face["candidates"]]
    assert face["subject"] == "person" and subjects[0] == "person"
    assert len(subjects) == len(set(subjects)) == 3
    assert face["candidates"][0]["face_id"] in {face_id, second.json()["face"]["face_id"]}
    stranger = identify(client, photo(photos_dir, STRANGER))
    assert stranger["faces"][0]["subject"] is None and stranger["faces"][0]["candidates"]
    # A threshold of 2 accepts anyone: the override is used.
    anyone = identify(client, photo(photos_dir, STRANGER), threshold=2.0)
    assert anyone["faces"][0]["subject"] is not None and anyone["far"] is None
    group = identify(client, (photos_dir / "office1.jpg").read_bytes(), max_faces=0, top_k=2)
    assert len(group["faces"]) == group["face_count"] > 1
    too_many = client.post("/gallery/identify", json={"image": body["image"], "top_k": 101})
    assert_error(too_many, 422, "invalid_request", "top_k")
    both = client.post("/gallery/identify", json={**body, "threshold": 0.5, "far": 1e-3})
    assert_error(both, 422, "invalid_request", "far")

    files = {"image": ("f.jpg", photo(photos_dir, PERSON[2]), "image/jpeg")}
    same = client.post("/gallery/subjects/person/verify", files=files).json()
    assert same["match"] is True and same["distance"] < same["threshold"]
    files = {"image": ("f.jpg", photo(photos_dir, STRANGER), "image/jpeg")}
    other = client.post("/gallery/subjects/person/verify", files=files).json()
    assert other["match"] is False and other["distance"] > other["threshold"]

    shown = client.get("/gallery/subjects/person").json()
    assert shown["face_count"] == 2 and {f["face_id"] for f in shown["faces"]} >= {face_id}
    assert "embedding" not in str(shown)
    assert client.delete(f"/gallery/subjects/person/faces/{face_id}").status_code == 204
    gone = client.delete(f"/gallery/subjects/person/faces/{face_id}")
    assert_error(gone, 404, "unknown_face", "face_id")
    assert client.delete("/gallery/subjects/person").status_code == 204
    after = identify(client, photo(photos_dir, PERSON[3]), top_k=5)
    assert "person" not in [c["subject"] for c in after["faces"][0]["candidates"]]


def test_low_quality_and_no_face(client, photos_dir):
    data = photo(photos_dir, "005_9574c208")
    first = enroll(client, "small", data)
    assert first.status_code == 201
    x1, y1, x2, y2 = first.json()["face"]["box"]
    # The same photo shrunk until the face is 30 px on its short side: detected, but too small.
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale = 30 / min(x2 - x1, y2 - y1)
    small = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    small.save(buffer, "PNG")
    assert_error(enroll(client, "small", buffer.getvalue()), 422, "low_quality", "image")
    blank = io.BytesIO()
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank, "PNG")
    assert_error(enroll(client, "small", blank.getvalue()), 422, "no_face", "image")
    assert client.get("/gallery/subjects/small").json()["face_count"] == 1


def test_startup_refuses_a_gallery_of_other_weights(checkpoint_dir, tmp_path):
    url = f"sqlite:///{tmp_path}/other.db"
    other = Gallery.open(url, "edgeface_s_gamma_05", "0" * 64)
    other.add_face("someone", np.ones(512), [0, 0, 100, 100], 0.99, "x", create_subject=True)
    other.close()
    env = {
        "EDGEFACE_GALLERY_URL": url,
        "EDGEFACE_WORKER_MODE": "threads",
        "EDGEFACE_WORKERS": "1",
        "EDGEFACE_DATA_DIR": str(tmp_path),
    }
    port = str(free_port())
    command = [sys.executable, "api.py", "--port", port, "--checkpoint-dir", str(checkpoint_dir)]
    result = subprocess.run(
        command, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "0" * 64 in result.stderr and "edgeface_s_gamma_05" in result.stderr
    assert "not comparable" in result.stderr
