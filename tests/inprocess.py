"""Requests built in-process, for testing how the service reads a body without a server."""

import httpx
from starlette.requests import Request


def asgi_request(path: str, chunk_bytes: int = 65536, **content) -> Request:
    """A POST to `path` whose body is what httpx makes of `content` (``files=``, ``data=``,
    ``json=``), arriving in chunks of `chunk_bytes` as a server would pass it on."""
    built = httpx.Request("POST", f"http://testserver{path}", **content)
    body = built.read()
    chunks = [body[i : i + chunk_bytes] for i in range(0, len(body), chunk_bytes)] or [b""]

    async def receive() -> dict:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", built.headers["content-type"].encode())],
    }
    return Request(scope, receive)
