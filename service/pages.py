"""Pages for people: the landing page and the API documentation (Swagger UI, ReDoc)."""

import html

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from service.dependencies import SettingsDep

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def index(settings: SettingsDep) -> str:
    model = html.escape(settings.model)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>EdgeFace verification</title></head>
<body>
<h1>EdgeFace face verification</h1>
<p>Model: <code>{model}</code>. POST two photos to <code>/verify</code> to learn whether they
show the same person.</p>
<p>API documentation: <a href="/docs">/docs</a> (Swagger UI), <a href="/redoc">/redoc</a>.</p>
</body></html>"""


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=request.app.openapi_url, title="EdgeFace API")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=request.app.openapi_url, title="EdgeFace API")
