"""The demo page and the offline docs in a real browser.

Debian's chromium, headless, driven by Playwright (no browser download) against the real server on
loopback. Every request for a host other than the loopback one is aborted and recorded, so the
pages must render from what the service itself serves.
"""

import io
import os
import re
import struct
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.server import running_server

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
CSP_REFUSAL = re.compile(r"'(?P<url>[^']+)' violates the following Content Security Policy")
SAME = ("005_02ab3a1b", "006_87166f38")
DIFFERENT = ("002_331d0423", "002_6749a2c4")


def require_browser() -> None:
    """As conftest.require: a missing browser skips locally and fails under CI."""
    missing = []
    if sync_playwright is None:
        missing.append("the playwright package (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


class Traffic:
    """What the pages asked for: local URLs, non-local ones (aborted), local answers of 400 or
    more, and non-local URLs the page's Content-Security-Policy kept from being requested."""

    def __init__(self) -> None:
        self.local: list[str] = []
        self.outside: list[str] = []
        self.failed: list[str] = []
        self.refused: list[str] = []

    def clear(self) -> None:
        for urls in (self.local, self.outside, self.failed, self.refused):
            urls.clear()

    def route(self, route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS:
            self.local.append(url)
            route.continue_()
        else:
            self.outside.append(url)
            route.abort("blockedbyclient")

    def response(self, response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def refused_by_csp(self, text: str) -> bool:
        found = CSP_REFUSAL.search(text)
        if found is None or urlsplit(found["url"]).hostname in LOCAL_HOSTS:
            return False
        self.refused.append(found["url"])
        return True


@pytest.fixture(scope="module")
def server(checkpoint_dir):
    require_browser()
    with running_server(checkpoint_dir) as base:
        yield base


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture(scope="module")
def context(server, traffic, tmp_path_factory):
    with sync_playwright() as playwright:
        browser_context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1000, "height": 900},
        )
        browser_context.route("**/*", traffic.route)
        browser_context.on("response", traffic.response)
        yield browser_context
        browser_context.close()


@pytest.fixture
def page(context, traffic):
    traffic.clear()
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))

    def console(message) -> None:
        # HTTP errors are in traffic.failed already; an API error is expected in some tests.
        if message.type != "error" or message.text.startswith("Failed to load resource"):
            return
        if not traffic.refused_by_csp(message.text):
            errors.append(message.text)

    tab.on("console", console)
    yield tab
    tab.close()
    assert errors == [], f"JavaScript errors: {errors}"


def assert_offline(traffic: Traffic, refused: tuple[str, ...] = ()) -> None:
    assert traffic.outside == [], f"requests left the machine: {traffic.outside}"
    assert traffic.failed == [], f"local requests failed: {traffic.failed}"
    assert set(traffic.refused) <= set(refused), f"the CSP refused: {traffic.refused}"


def test_swagger_ui_renders_offline(server, page, traffic):
    page.goto(server + "/docs")
    # By its summary: /gallery/subjects/{subject}/verify contains "/verify" too.
    operation = page.locator(".opblock", has_text="Do two photos show the same person?")
    expect(operation).to_be_visible(timeout=15_000)
    expect(operation).to_contain_text("/verify")
    assert any(url.endswith("/static/docs/swagger-ui-bundle.js") for url in traffic.local)
    assert_offline(traffic)
    redirect = httpx.get(server + "/docs/oauth2-redirect", timeout=30)
    assert redirect.status_code == 200 and "oauth2" in redirect.text


def test_redoc_renders_offline(server, page, traffic):
    page.goto(server + "/redoc")
    entry = page.get_by_role("menuitem", name=re.compile("Do two photos show the same person"))
    expect(entry).to_be_visible(timeout=15_000)
    expect(page.locator("h2", has_text="Do two photos show the same person?")).to_be_visible()
    expect(page.get_by_text("/verify").first).to_be_attached()
    assert any(url.endswith("/static/docs/redoc.standalone.js") for url in traffic.local)
    # ReDoc always renders an <img> of its logo from its CDN; the page's CSP stops it.
    assert_offline(traffic, refused=("https://cdn.redoc.ly/redoc/logo-mini.svg",))


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((300, 300, 3), 128, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def verify_on_page(page, photos_dir: Path, first: str, second: str) -> None:
    page.get_by_label("First photo").set_input_files(photos_dir / f"{first}.jpg")
    page.get_by_label("Second photo").set_input_files(photos_dir / f"{second}.jpg")
    expect(page.locator("#preview1")).to_be_visible()
    expect(page.locator("#preview2")).to_be_visible()
    page.get_by_role("button", name="Verify").click()


def api_verify(server: str, photos_dir: Path, first: str, second: str) -> dict:
    files = {
        "image1": ("a.jpg", (photos_dir / f"{first}.jpg").read_bytes(), "image/jpeg"),
        "image2": ("b.jpg", (photos_dir / f"{second}.jpg").read_bytes(), "image/jpeg"),
    }
    response = httpx.post(server + "/verify", files=files, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_demo_page_shows_match_then_no_match(server, page, traffic, photos_dir, tmp_path):
    page.goto(server + "/")
    expect(page.locator("h1")).to_contain_text("EdgeFace")
    expect(page.locator("body")).to_contain_text("edgeface_s_gamma_05")
    for name in ("/docs", "/redoc"):
        expect(page.get_by_role("link", name=name)).to_have_attribute("href", name)

    expect(page.get_by_label("API key")).to_have_count(0)  # this server has none

    verify_on_page(page, photos_dir, *SAME)
    decision = page.locator("#decision")
    expect(decision).to_have_text(re.compile(r"^Match\b"), timeout=60_000)
    expect(decision).to_be_visible()
    assert "no match" not in decision.inner_text().lower()
    expected = api_verify(server, photos_dir, *SAME)
    numbers = page.locator("#numbers").inner_text()
    assert f"{expected['distance']:.4f}" in numbers and f"{expected['threshold']:.4f}" in numbers

    crops = page.locator(".crops img")
    expect(crops).to_have_count(2)
    for index in range(2):
        expect(crops.nth(index)).to_be_visible()
        size = crops.nth(index).evaluate(
            "img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])"
        )
        assert size == [112, 112]
    first_crop, second_crop = (crops.nth(i).get_attribute("src") for i in range(2))
    assert first_crop.startswith("data:image/png;base64,") and first_crop != second_crop

    verify_on_page(page, photos_dir, *DIFFERENT)
    expect(decision).to_have_text(re.compile(r"^No match\b"), timeout=60_000)
    expected = api_verify(server, photos_dir, *DIFFERENT)
    assert f"{expected['distance']:.4f}" in page.locator("#numbers").inner_text()
    expect(page.locator("#error")).to_be_hidden()

    shot = tmp_path / "demo.png"
    page.screenshot(path=shot, full_page=True)
    width, height = png_size(shot.read_bytes())
    assert width >= 900 and height >= 600 and shot.stat().st_size > 20_000
    assert_offline(traffic)


@pytest.mark.parametrize(
    "name,content,code",
    [
        ("notes.txt", b"hello, not a picture", "invalid_image"),
        ("blank.png", blank_png(), "no_face"),
    ],
    ids=["not-an-image", "no-face"],
)
def test_demo_page_shows_the_api_error(server, page, traffic, photos_dir, name, content, code):
    photo = photos_dir / f"{SAME[0]}.jpg"
    answer = httpx.post(
        server + "/verify",
        files={"image1": photo.open("rb"), "image2": (name, content)},
        timeout=120,
    ).json()
    assert answer["code"] == code and answer["field"] == "image2"

    page.goto(server + "/")
    page.get_by_label("First photo").set_input_files(photo)
    page.get_by_label("Second photo").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": content}
    )
    page.get_by_role("button", name="Verify").click()
    error = page.locator("#error")
    expect(error).to_have_text(answer["detail"], timeout=60_000)
    assert error.inner_text().startswith("image2: ")
    expect(page.locator("#answer")).to_be_hidden()
    expect(page.get_by_role("button", name="Verify")).to_be_enabled()
    assert traffic.outside == []


def test_demo_page_fits_a_phone_screen(server, page, traffic, photos_dir):
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(server + "/")
    verify_on_page(page, photos_dir, *SAME)
    expect(page.locator("#decision")).to_have_text(re.compile(r"^Match\b"), timeout=60_000)
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] == 360
    for locator in (page.get_by_label("Second photo"), page.locator(".crops img").nth(1)):
        box = locator.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert_offline(traffic)


def test_demo_page_sends_the_api_key_it_is_given(checkpoint_dir, page, traffic, photos_dir):
    key = "demo-page-key"
    with running_server(checkpoint_dir, env={"EDGEFACE_API_KEY": key}) as base:
        refused = httpx.post(base + "/verify", files={}, timeout=30)
        assert refused.status_code == 401
        page.goto(base + "/")
        key_field = page.get_by_label("API key")
        expect(key_field).to_have_attribute("type", "password")
        assert key not in page.content()

        verify_on_page(page, photos_dir, *SAME)
        expect(page.locator("#error")).to_have_text(refused.json()["detail"], timeout=60_000)

        key_field.fill(key)
        page.get_by_role("button", name="Verify").click()
        expect(page.locator("#decision")).to_have_text(re.compile(r"^Match\b"), timeout=60_000)
        stored = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
        assert stored == [0, 0, ""]
    assert traffic.outside == []


def test_demo_page_enrolls_and_identifies(server, page, traffic, photos_dir):
    page.goto(server + "/")
    person = ("002_3a2ef5df", "011_7b37bf1f")  # one person (tests/photos README)
    page.get_by_label("Name (subject id)").fill("Ana Demo")
    page.set_input_files("#enroll-image", str(photos_dir / f"{person[0]}.jpg"))
    page.click("#enroll")
    result = page.locator("#enroll-result")
    expect(result).to_have_text(re.compile(r"^Enrolled a face of Ana Demo"), timeout=60_000)

    identified = page.locator("#identify-result")
    page.set_input_files("#identify-image", str(photos_dir / f"{person[1]}.jpg"))
    page.click("#identify")
    expect(identified).to_have_text(re.compile(r"^Identified: Ana Demo \("), timeout=60_000)
    page.set_input_files("#identify-image", str(photos_dir / "009_fc574624.jpg"))
    page.click("#identify")
    unknown = re.compile(r"^Unknown: the closest is Ana Demo")
    expect(identified).to_have_text(unknown, timeout=60_000)
    assert_offline(traffic)

    # The same photo again: the API's 409 in plain words.
    page.click("#enroll")
    expect(result).to_have_text(re.compile(r"enrolled for 'Ana Demo' already"), timeout=60_000)
    expect(result).to_have_class(re.compile(r"\berror\b"))
