"""Bad uploads are refused in the server process, before they wait for a worker: the header
probe (``face_alignment.probe_image``) on its own, and the real server answering them while its
only worker is busy."""

import asyncio
import base64
import inspect
import io
import threading
import time

import anyio
import httpx
import numpy as np
import pytest
from fastapi.routing import APIRoute
from PIL import Image

from api import create_app
from face_alignment import ImageTooLargeError, InvalidImageError, load_image, probe_image
from service.inputs import INLINE_CHECK_BYTES, read_images
from service.observability import leaf_routes
from service.schemas import EmbedForm, EmbedJSON
from service.settings import Settings
from tests.inprocess import asgi_request
from tests.server import running_server


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bad_uploads(photos_dir) -> dict[str, tuple[bytes, type[Exception]]]:
    """What the probe refuses, with the error decoding gives for each."""
    jpeg = (photos_dir / "005_02ab3a1b.jpg").read_bytes()
    png = encoded(Image.new("RGB", (64, 64)), "PNG")
    return {
        "empty": (b"", InvalidImageError),
        "text": (b"hello, not a picture\n" * 10, InvalidImageError),
        "jpeg header cut": (jpeg[:20], InvalidImageError),
        "png header cut": (png[:30], InvalidImageError),
        "over the pixels": (encoded(Image.new("L", (8000, 6000)), "PNG"), ImageTooLargeError),
        "no pixels": (b"P5\n0 0\n255\n", InvalidImageError),
    }


def test_the_probe_refuses_what_decoding_refuses_from_the_header(photos_dir):
    for name, (data, error) in bad_uploads(photos_dir).items():
        with pytest.raises(error) as probed:
            probe_image(data, 40_000_000)
        with pytest.raises(error) as decoded:
            load_image(data, 40_000_000)
        assert str(probed.value) == str(decoded.value), name


def test_the_probe_passes_decodable_images_and_reads_no_pixels(photos_dir):
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"):
        probe_image(encoded(picture, fmt), 40_000_000)
    probe_image((photos_dir / "office1.jpg").read_bytes(), 40_000_000)
    # The pixel data is not read: a JPEG cut after its header passes (decoding refuses it).
    jpeg = (photos_dir / "006_9135205d.jpg").read_bytes()
    probe_image(jpeg[: len(jpeg) // 2], 40_000_000)
    with pytest.raises(InvalidImageError):
        load_image(jpeg[: len(jpeg) // 2])


@pytest.fixture(scope="module")
def one_worker(checkpoint_dir):
    # One worker, and detection on the full 1200 px image, so one request keeps it busy for
    # seconds: whatever answers meanwhile did not wait for it.
    env = {"EDGEFACE_WORKERS": "1", "EDGEFACE_DETECT_MAX_SIDE": "1200"}
    with running_server(checkpoint_dir, env) as base:
        yield base


def test_bad_uploads_are_answered_while_the_only_worker_is_busy(one_worker, photos_dir):
    crowd = Image.open(photos_dir / "office4.jpg").convert("RGB").resize((1200, 800))
    slow = encoded(crowd, "JPEG", quality=90)
    finished: list[tuple[float, int]] = []

    def busy() -> None:
        with httpx.Client(base_url=one_worker, timeout=300) as client:
            response = client.post("/embed", files={"image": slow}, data={"max_faces": "0"})
        finished.append((time.perf_counter(), response.status_code))

    # Two slow jobs queued for the one worker, so that it stays busy for long enough on a quiet
    # machine too (one job alone could end before the bad uploads' round trips did); without
    # the probe, the bad uploads would queue behind both.
    workers = [threading.Thread(target=busy) for _ in range(2)]
    with httpx.Client(base_url=one_worker, timeout=300) as client:
        for worker in workers:
            worker.start()
            time.sleep(0.25)
        time.sleep(0.25)  # the slow jobs reached the worker and its queue
        answers = []
        for name, (data, _) in bad_uploads(photos_dir).items():
            portrait = (photos_dir / "005_02ab3a1b.jpg").read_bytes()
            as_file = client.post("/verify", files={"image1": portrait, "image2": data})
            encoded_json = base64.b64encode(data).decode()
            as_json = client.post("/embed", json={"image": encoded_json})
            answers += [(name, "image2", as_file), (name, "image", as_json)]
        answered = time.perf_counter()
    for worker in workers:
        worker.join()
    free = max(when for when, _ in finished)  # the worker's last job ended
    print(f"bad uploads answered {free - answered:.2f} s before the worker was free")
    assert [status for _, status in finished] == [200, 200]
    assert answered < free, "the bad uploads waited for the busy worker"
    for name, field, response in answers:
        expected = 413 if name == "over the pixels" else 400
        assert response.status_code == expected, (name, response.text)
        assert response.json()["field"] == field


def dependency_calls(dependant) -> list:
    calls = []
    for sub in dependant.dependencies:
        calls += [sub.call, *dependency_calls(sub)]
    return calls


def test_no_route_dependency_runs_in_the_thread_pool():
    """FastAPI runs a plain ``def`` dependency in its thread pool: a handoff to another thread
    and back per dependency per request (service/dependencies.py). Ours are all ``async``."""
    app = create_app(Settings())
    routes = [route for route in leaf_routes(app.routes) if isinstance(route, APIRoute)]
    calls = {call for route in routes for call in dependency_calls(route.dependant)}
    assert len(calls) >= 5  # settings, readiness, compute, limiter, gallery, ...
    threaded = [call.__qualname__ for call in calls if not inspect.iscoroutinefunction(call)]
    assert threaded == []


def test_small_uploads_are_checked_at_once_larger_ones_in_a_parsing_thread(photos_dir):
    """With every request-parsing thread taken, a small bad upload (the usual kind: text, zero
    bytes, a cut header) is still refused at once, in the event loop; an upload over
    INLINE_CHECK_BYTES waits for a thread."""
    portrait = (photos_dir / "005_02ab3a1b.jpg").read_bytes()
    assert len(portrait) > INLINE_CHECK_BYTES
    text = b"this is plain text, not a picture\n" * 8

    async def read(request) -> str:
        limiter = anyio.CapacityLimiter(1)
        async with limiter:  # the only thread is busy
            try:
                await asyncio.wait_for(
                    read_images(
                        request, EmbedForm, EmbedJSON, ("image",), 10 << 20, 40_000_000, limiter
                    ),
                    timeout=1.0,
                )
            except InvalidImageError:
                return "refused"
            except TimeoutError:
                return "waited"
        return "passed"

    def outcome(**content) -> str:
        return asyncio.run(read(asgi_request("/embed", **content)))

    assert outcome(files={"image": ("a.txt", text)}) == "refused"
    assert outcome(files={"image": ("a.jpg", b"")}) == "refused"
    assert outcome(json={"image": base64.b64encode(text).decode()}) == "refused"
    assert outcome(files={"image": ("a.jpg", portrait[:200])}) == "refused"
    assert outcome(files={"image": ("a.jpg", portrait)}) == "waited"
    assert outcome(json={"image": base64.b64encode(portrait).decode()}) == "waited"
