"""POST /embed, JSON bodies with base64 images, return_crops and the command line, against the
real server on a loopback port."""

import base64
import io
import json
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server import REPO, running_server

PORTRAIT = "005_02ab3a1b"
TWO_FACES = "005_8af3cada"  # a portrait with a second face in the background
SAME_PERSON = ("005_02ab3a1b", "006_87166f38")
LIMIT = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def client(checkpoint_dir):
    with running_server(checkpoint_dir) as base, httpx.Client(base_url=base, timeout=120) as http:
        yield http


def photo(photos_dir: Path, stem: str) -> bytes:
    return (photos_dir / f"{stem}.jpg").read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def post_embed(client: httpx.Client, image: bytes, **fields) -> httpx.Response:
    files = {"image": ("photo.jpg", image, "image/jpeg")}
    return client.post("/embed", files=files, data={k: str(v) for k, v in fields.items()})


def post_verify(client: httpx.Client, image1: bytes, image2: bytes, **fields) -> httpx.Response:
    files = {"image1": ("a.jpg", image1, "image/jpeg"), "image2": ("b.jpg", image2, "image/jpeg")}
    return client.post("/verify", files=files, data={k: str(v) for k, v in fields.items()})


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) == {"detail", "code", "field"}
    assert body["code"] == code and body["field"] == field
    if field is not None:
        assert field in body["detail"]
    return body


def area(face: dict) -> float:
    x1, y1, x2, y2 = face["box"]
    return (x2 - x1) * (y2 - y1)


def assert_same_answer(left, right, tolerance: float = 1e-6, where: str = "answer") -> None:
    """Equal JSON values, floats to within ``tolerance``."""
    if isinstance(left, dict):
        assert isinstance(right, dict) and set(left) == set(right), where
        for key in left:
            assert_same_answer(left[key], right[key], tolerance, f"{where}.{key}")
    elif isinstance(left, list):
        assert isinstance(right, list) and len(left) == len(right), where
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            assert_same_answer(a, b, tolerance, f"{where}[{i}]")
    elif isinstance(left, float) and not isinstance(left, bool):
        assert right == pytest.approx(left, abs=tolerance), where
    else:
        assert left == right, where


# /embed


def test_embed_portrait_gives_one_unit_embedding(client, photos_dir):
    body = ok(post_embed(client, photo(photos_dir, PORTRAIT)))
    assert body["model"] == "edgeface_s_gamma_05"
    assert body["face_count"] >= 1
    (face,) = body["faces"]
    assert set(face) == {"box", "score", "landmarks", "embedding"}
    embedding = np.array(face["embedding"])
    assert embedding.shape == (512,) and np.isfinite(embedding).all()
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and 0.9 < face["score"] <= 1


def test_embed_every_face_largest_first(client, photos_dir):
    body = ok(post_embed(client, photo(photos_dir, "office1"), max_faces=0))
    faces = body["faces"]
    assert len(faces) == body["face_count"] >= 3
    areas = [area(face) for face in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        assert np.linalg.norm(face["embedding"]) == pytest.approx(1.0, abs=1e-5)

    two = ok(post_embed(client, photo(photos_dir, "office1"), max_faces=2))
    assert len(two["faces"]) == 2 and two["face_count"] == body["face_count"]
    assert_same_answer(two["faces"], faces[:2])


def test_embed_without_a_face_is_422_naming_the_image(client):
    assert_error(post_embed(client, blank_png()), 422, "no_face", "image")


@pytest.mark.parametrize("max_faces", ["-1", "two"])
def test_embed_invalid_max_faces_is_422(client, photos_dir, max_faces):
    response = post_embed(client, photo(photos_dir, PORTRAIT), max_faces=max_faces)
    assert_error(response, 422, "invalid_request", "max_faces")


# JSON bodies


def test_json_embed_equals_multipart(client, photos_dir):
    image = photo(photos_dir, TWO_FACES)
    multipart = ok(post_embed(client, image, max_faces=0))
    assert len(multipart["faces"]) >= 2
    plain = ok(client.post("/embed", json={"image": b64(image), "max_faces": 0}))
    uri = ok(client.post("/embed", json={"image": f"data:image/jpeg;base64,{b64(image)}"}))
    assert_same_answer(plain, multipart)
    assert_same_answer(uri["faces"][0], multipart["faces"][0])


def test_json_verify_equals_multipart(client, photos_dir):
    first, second = (photo(photos_dir, stem) for stem in SAME_PERSON)
    multipart = ok(post_verify(client, first, second, metric="angular"))
    as_json = ok(
        client.post(
            "/verify",
            json={
                "image1": b64(first),
                "image2": "data:image/jpeg;base64," + b64(second),
                "metric": "angular",
            },
        )
    )
    assert as_json["distance"] == pytest.approx(multipart["distance"], abs=1e-6)
    assert_same_answer(as_json, multipart)
    assert as_json["match"] is True
    assert "crop" not in as_json["image1"]  # only with return_crops


def test_json_base64_with_line_breaks_is_accepted(client, photos_dir):
    image = photo(photos_dir, PORTRAIT)
    wrapped = "\n".join(b64(image)[i : i + 76] for i in range(0, len(b64(image)), 76))
    assert ok(client.post("/embed", json={"image": wrapped}))["faces"]


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        "abc",  # length not a multiple of 4
        "data:image/png;base64",  # no comma, no data
        "data:image/png,iVBORw0KGgo=",  # a data: URI that is not base64
        "ünïcode==",
    ],
)
def test_invalid_base64_is_400_naming_the_field(client, photos_dir, text):
    response = client.post(
        "/verify", json={"image1": b64(photo(photos_dir, PORTRAIT)), "image2": text}
    )
    assert_error(response, 400, "invalid_base64", "image2")
    assert_error(client.post("/embed", json={"image": text}), 400, "invalid_base64", "image")


def test_base64_of_something_else_is_400_invalid_image(client):
    response = client.post("/embed", json={"image": b64(b"hello, not a picture")})
    assert_error(response, 400, "invalid_image", "image")


def test_empty_string_is_400_invalid_image(client):
    assert_error(client.post("/embed", json={"image": ""}), 400, "invalid_image", "image")


@pytest.fixture
def base64_shaped_image_path(photos_dir):
    """A real photo at a path made only of base64 characters, its length a multiple of 4."""
    folder = Path("/tmp") / f"edgeface{uuid.uuid4().hex}"
    name = "portrait"
    while len(f"{folder}/{name}") % 4:
        name += "x"
    folder.mkdir()
    shutil.copy(photos_dir / f"{PORTRAIT}.jpg", folder / name)
    yield f"{folder}/{name}"
    shutil.rmtree(folder)


def test_a_path_to_a_real_image_is_never_opened(client, base64_shaped_image_path):
    assert Image.open(base64_shaped_image_path).size  # readable, and valid base64 as text
    base64.b64decode(base64_shaped_image_path, validate=True)
    response = client.post("/embed", json={"image": base64_shaped_image_path})
    assert_error(response, 400, "invalid_image", "image")


@pytest.mark.parametrize("text", ["/etc/passwd", "file:///etc/passwd", "../../etc/hostname"])
def test_file_paths_are_400(client, text):
    assert_error(client.post("/embed", json={"image": text}), 400, "invalid_base64", "image")


def test_urls_are_400_and_never_fetched(client):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/face.jpg"
        for text in (url, f"data:text/uri-list;base64,{b64(url.encode())}"):
            response = client.post("/embed", json={"image": text})
            assert response.status_code == 400, response.text
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_unknown_json_field_is_422(client, photos_dir):
    body = {"image": b64(photo(photos_dir, PORTRAIT)), "url": "http://example.com/a.jpg"}
    assert_error(client.post("/embed", json=body), 422, "invalid_request", "url")


def test_malformed_json_is_400(client):
    response = client.post(
        "/embed", content=b'{"image": ', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json", None)


@pytest.mark.parametrize(
    "headers", [{"content-type": "text/plain"}, {"content-type": "application/xml"}, {}]
)
def test_other_content_types_are_415(client, headers):
    response = client.post("/verify", content=b"image1=a&image2=b", headers=headers)
    assert_error(response, 415, "unsupported_media_type", None)
    assert "multipart/form-data" in response.json()["detail"]


def test_decoded_base64_over_the_byte_limit_is_413_naming_it(client):
    body = assert_error(
        client.post("/embed", json={"image": b64(b"\0" * (LIMIT + 1))}), 413, "too_large", "image"
    )
    assert str(LIMIT) in body["detail"]


@pytest.mark.parametrize("size", [LIMIT + 1, LIMIT + 2, LIMIT + 3])
def test_base64_over_the_limit_is_refused_with_its_exact_size(client, size):
    # Every padding (2, 1, 0 '=') gives the decoded size from the text's length alone.
    response = client.post("/embed", json={"image": b64(b"\0" * size)})
    body = assert_error(response, 413, "too_large", "image")
    assert f"has {size} bytes, over the limit of {LIMIT} bytes" in body["detail"]
    at_limit = client.post("/embed", json={"image": b64(b"\0" * LIMIT)})
    assert_error(at_limit, 400, "invalid_image", "image")


def test_two_images_at_the_limit_fit_in_a_json_body(client):
    # 2 x 4/3 x 10 MB of base64 is more than twice the raw limit: the body limit allows for it.
    junk = b64(b"\0" * (LIMIT - 16))
    response = client.post("/verify", json={"image1": junk, "image2": junk})
    assert_error(response, 400, "invalid_image", "image1")


# return_crops


def decode_crop(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
    assert image.format == "PNG"
    return image


def test_return_crops_gives_two_aligned_pngs(client, photos_dir):
    first, second = (photo(photos_dir, stem) for stem in SAME_PERSON)
    body = ok(post_verify(client, first, second, return_crops="true"))
    for field in ("image1", "image2"):
        crop = decode_crop(body[field]["crop"])
        assert crop.size == (112, 112) and crop.mode == "RGB"
        assert np.asarray(crop).std() > 10  # a picture, not a blank square


def test_embed_return_crops(client, photos_dir):
    body = ok(post_embed(client, photo(photos_dir, TWO_FACES), max_faces=2, return_crops=True))
    assert [decode_crop(face["crop"]).size for face in body["faces"]] == [(112, 112)] * 2


# The command line prints the same JSON


def run_cli(checkpoint_dir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "verification", *args, "--checkpoint-dir", str(checkpoint_dir)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_cli_verify_prints_the_http_answer(client, photos_dir, checkpoint_dir):
    paths = [str(photos_dir / f"{stem}.jpg") for stem in ("005_8af3cada", "011_da108a07")]
    result = run_cli(checkpoint_dir, "verify", *paths, "--metric", "euclidean_l2")
    assert result.returncode == 0, result.stderr
    http = ok(post_verify(client, *(Path(p).read_bytes() for p in paths), metric="euclidean_l2"))
    assert_same_answer(json.loads(result.stdout), http, tolerance=1e-5)


def test_cli_embed_prints_the_http_answer(client, photos_dir, checkpoint_dir):
    path = photos_dir / f"{TWO_FACES}.jpg"
    result = run_cli(checkpoint_dir, "embed", str(path), "--max-faces", "0")
    assert result.returncode == 0, result.stderr
    http = ok(post_embed(client, path.read_bytes(), max_faces=0))
    assert len(http["faces"]) >= 2
    assert_same_answer(json.loads(result.stdout), http, tolerance=1e-5)


def test_cli_bad_image_exits_2_with_one_line(tmp_path, photos_dir, checkpoint_dir):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"hello, not a picture")
    result = run_cli(checkpoint_dir, "verify", str(bad), str(photos_dir / f"{PORTRAIT}.jpg"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: image1: ") and "not an image" in line


def test_cli_missing_file_exits_2_before_loading(tmp_path, checkpoint_dir):
    result = run_cli(checkpoint_dir, "embed", str(tmp_path / "nope.jpg"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: image: cannot read")
    assert "Traceback" not in result.stderr


# face=largest|center: which face of each photo /verify compares


def off_centre_crop(photos_dir: Path) -> bytes:
    """An LFW-style crop: one person's face small in the centre, another person's bigger face
    at the left edge, as if standing in front of the camera beside the subject."""
    canvas = Image.new("RGB", (600, 400), (128, 128, 128))
    big = Image.open(photos_dir / f"{PORTRAIT}.jpg").convert("RGB")
    big = big.resize((round(big.width * 400 / big.height), 400))
    canvas.paste(big, (-big.width // 3, 0))
    small = Image.open(photos_dir / "002_3a2ef5df.jpg").convert("RGB")
    small = small.resize((round(small.width * 180 / small.height), 180))
    canvas.paste(small, (360 - small.width // 2, 200 - small.height // 2))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def centre_distance(face: dict, width: int = 600, height: int = 400) -> float:
    x1, y1, x2, y2 = face["box"]
    return float(np.hypot((x1 + x2) / 2 - width / 2, (y1 + y2) / 2 - height / 2))


@pytest.fixture(scope="module")
def crowded(photos_dir) -> bytes:
    return off_centre_crop(photos_dir)


def test_face_center_compares_the_centred_face_not_the_largest(client, photos_dir, crowded):
    centred_person = photo(photos_dir, "011_7b37bf1f")  # the same person as 002_3a2ef5df
    big_person = photo(photos_dir, "006_87166f38")  # the same person as PORTRAIT
    largest = ok(post_verify(client, crowded, centred_person))
    center = ok(post_verify(client, crowded, centred_person, face="center"))
    assert largest["image1"]["face_count"] == center["image1"]["face_count"] == 2
    assert area(largest["image1"]) > 2 * area(center["image1"])
    assert centre_distance(center["image1"]) < centre_distance(largest["image1"]) / 2
    assert largest["match"] is False and center["match"] is True
    # The other way round: the big face at the edge is the other person's.
    assert ok(post_verify(client, crowded, big_person))["match"] is True
    as_json = {"image1": b64(crowded), "image2": b64(big_person), "face": "center"}
    assert ok(client.post("/verify", json=as_json))["match"] is False
    # The default is the largest face, and both encodings choose alike.
    as_json = {"image1": b64(crowded), "image2": b64(centred_person), "face": "largest"}
    assert_same_answer(ok(client.post("/verify", json=as_json)), largest, tolerance=1e-5)


@pytest.mark.parametrize("body", ["form", "json"])
def test_an_unknown_face_choice_is_422_naming_it(client, photos_dir, body):
    image = photo(photos_dir, PORTRAIT)
    if body == "form":
        response = post_verify(client, image, image, face="middle")
    else:
        response = client.post(
            "/verify", json={"image1": b64(image), "image2": b64(image), "face": "middle"}
        )
    assert_error(response, 422, "invalid_request", "face")


def test_cli_verify_takes_face(client, photos_dir, checkpoint_dir, crowded, tmp_path):
    path = tmp_path / "crowded.jpg"
    path.write_bytes(crowded)
    other = photos_dir / "011_7b37bf1f.jpg"
    result = run_cli(checkpoint_dir, "verify", str(path), str(other), "--face", "center")
    assert result.returncode == 0, result.stderr
    http = ok(post_verify(client, crowded, other.read_bytes(), face="center"))
    assert http["match"] is True
    assert_same_answer(json.loads(result.stdout), http, tolerance=1e-5)
