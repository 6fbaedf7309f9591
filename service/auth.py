"""The optional API key: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

Checked before routing and before the body is read, so a refused client costs nothing. The
landing page, the health checks and the documentation stay open.
"""

import hmac

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import send_error_json

PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
# Assets of the documentation and the landing page.
PUBLIC_PREFIXES = ("/static/",)
API_KEY_HEADER = "X-API-Key"
CHALLENGE = b'Bearer realm="edgeface"'


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def presented_keys(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Every credential the request carries in X-API-Key or Authorization: Bearer."""
    keys = []
    for name, value in headers:
        if name == b"x-api-key":
            keys.append(value.strip())
        elif name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                keys.append(token.strip())
    return keys


class APIKeyAuth:
    """Pure ASGI middleware: 401 (JSON error, WWW-Authenticate) unless the key is presented."""

    def __init__(self, app: ASGIApp, api_key: SecretStr) -> None:
        self.app = app
        self._key = api_key.get_secret_value().encode()

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        # Compare with every presented key (no short-circuit), each in constant time.
        matches = [hmac.compare_digest(key, self._key) for key in presented_keys(headers)]
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = list(scope.get("headers") or [])
        if self.authorized(headers):
            await self.app(scope, receive, send)
            return
        given = bool(presented_keys(headers))
        await self._refuse(send, "wrong API key" if given else "missing API key")

    async def _refuse(self, send: Send, problem: str) -> None:
        detail = f"{problem}: send it as {API_KEY_HEADER}: <key> or Authorization: Bearer <key>"
        await send_error_json(send, 401, "unauthorized", detail, [(b"www-authenticate", CHALLENGE)])
