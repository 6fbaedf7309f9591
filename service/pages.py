"""Pages for people: the demo page at / and the API documentation (Swagger UI, ReDoc).

Everything a page loads is served by this process, so the pages work on a box with no internet.
"""

import html
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from service.dependencies import SettingsDep

STATIC_DIR = Path(__file__).parent / "static"
# fastapi-offline ships the swagger-ui-dist and redoc standalone bundles; only its files are used.
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
STATIC_URL = "/static"
DOCS_ASSETS_URL = "/static/docs"

# The browser itself enforces "nothing from elsewhere": ReDoc, for one, always renders an <img>
# from cdn.redoc.ly. The docs pages need inline script and styles (FastAPI's HTML, ReDoc's
# styled-components); the demo page needs data: (crops) and blob: (previews) images only.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'"
)
DEMO_CSP = "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'"

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, settings: SettingsDep) -> HTMLResponse:
    root = html.escape(_root(request))
    model = html.escape(settings.model)
    # The key itself never reaches the page; only whether one is needed.
    key_field = ""
    if settings.api_key is not None:
        key_field = """
  <p class="key"><label for="api-key">API key</label>
  <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck="false"></p>"""
    page = f"""<!doctype html>
<html lang="en"><head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>EdgeFace verification</title>
<link rel="icon" href="{root}{DOCS_ASSETS_URL}/favicon.png">
<link rel="stylesheet" href="{root}{STATIC_URL}/demo.css">
<script src="{root}{STATIC_URL}/demo.js" defer></script>
</head>
<body>
<main>
<h1>EdgeFace face verification</h1>
<p>Model <code>{model}</code>. Choose two photos to learn whether they show the same person.
The largest face of each photo is compared.</p>
<form id="verify-form" action="{root}/verify" method="post" enctype="multipart/form-data">
  <div class="pickers">
    <div class="picker">
      <label for="image1">First photo</label>
      <input id="image1" name="image1" type="file" accept="image/*" required>
      <img id="preview1" class="preview" alt="" hidden>
    </div>
    <div class="picker">
      <label for="image2">Second photo</label>
      <input id="image2" name="image2" type="file" accept="image/*" required>
      <img id="preview2" class="preview" alt="" hidden>
    </div>
  </div>{key_field}
  <input type="hidden" name="return_crops" value="true">
  <button id="verify" type="submit">Verify</button>
</form>
<section id="result" aria-live="polite">
  <p id="status"></p>
  <p id="error" hidden></p>
  <div id="answer" hidden>
    <p id="decision"></p>
    <p id="numbers"></p>
    <div class="crops">
      <figure id="figure1">
        <img id="crop1" width="112" height="112" alt="aligned face from the first photo">
        <figcaption>First photo, aligned</figcaption></figure>
      <figure id="figure2">
        <img id="crop2" width="112" height="112" alt="aligned face from the second photo">
        <figcaption>Second photo, aligned</figcaption></figure>
    </div>
  </div>
</section>
<section id="gallery">
<h2>Gallery</h2>
<p>Enroll faces of people, then find out who is in a photo among them.</p>
<form id="enroll-form" data-subjects="{root}/gallery/subjects/">
  <p><label for="enroll-subject">Name (subject id)</label>
  <input id="enroll-subject" name="subject" autocomplete="off" spellcheck="false" required></p>
  <p><label for="enroll-image">Photo to enroll</label>
  <input id="enroll-image" name="image" type="file" accept="image/*" required></p>
  <button id="enroll" type="submit">Enroll</button>
</form>
<p id="enroll-result" class="gallery-result" aria-live="polite"></p>
<form id="identify-form" action="{root}/gallery/identify" method="post"
  enctype="multipart/form-data">
  <p><label for="identify-image">Photo to identify</label>
  <input id="identify-image" name="image" type="file" accept="image/*" required></p>
  <button id="identify" type="submit">Identify</button>
</form>
<p id="identify-result" class="gallery-result" aria-live="polite"></p>
</section>
<script src="{root}{STATIC_URL}/gallery.js" defer></script>
<footer>API documentation: <a href="{root}/docs">/docs</a> (Swagger UI),
<a href="{root}/redoc">/redoc</a> (ReDoc).</footer>
</main>
</body></html>"""
    return HTMLResponse(page, headers={"Content-Security-Policy": DEMO_CSP})


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    app = request.app
    redirect = app.swagger_ui_oauth2_redirect_url
    response = get_swagger_ui_html(
        openapi_url=root + app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        oauth2_redirect_url=root + redirect if redirect else None,
        init_oauth=app.swagger_ui_init_oauth,
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    response = get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def install_pages(app: FastAPI) -> None:
    """Add the demo page, /docs, /redoc and the static files they load to ``app``."""
    app.include_router(router)
    if app.swagger_ui_oauth2_redirect_url:
        app.add_api_route(
            app.swagger_ui_oauth2_redirect_url, swagger_ui_redirect, include_in_schema=False
        )
    # The more specific mount first: /static would otherwise answer 404 for /static/docs/*.
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
