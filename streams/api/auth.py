"""Bearer-token guard: every route but health, metrics and the console's static files needs
`Authorization: Bearer <t>` (the console page holds no data; it asks for the token).

A token is required whenever the server listens beyond loopback; on loopback without a
token the API is open (a single-machine setup).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Collection

from aiohttp import web

from streams.api import console
from streams.api.errors import Handler, json_error
from streams.core.errors import ConfigError

OPEN_PATHS: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics"}) | console.PATHS


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def required_token(web_host: str, api_token: str | None) -> str | None:
    """The token to enforce, or None; refuses to serve beyond loopback without one."""
    if api_token:
        return api_token
    if not is_loopback(web_host):
        raise ConfigError(
            f"the worker API would listen on {web_host!r} without a token; set "
            "LOOKOUT_API_TOKEN (or bind LOOKOUT_WEB_HOST=127.0.0.1)"
        )
    return None


def bearer_token_middleware(token: str, open_paths: Collection[str] = OPEN_PATHS):
    """aiohttp middleware that answers 401 unless the request carries the token."""
    expected = token.encode("utf-8")

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), expected
        ):
            response = json_error(
                401, "missing or wrong bearer token; send 'Authorization: Bearer <token>'"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="lookout"'
            return response
        return await handler(request)

    return check_token
