"""The worker's HTTP API on Faust's aiohttp server: shared errors, auth, health, OpenAPI.

Each area's `routes(...)` returns `Route`s: a `RouteSpec` (what `/openapi.json` shows) bound
to its handler. The worker registers them through Faust's own web API (`streams.worker.web`).

The package itself imports nothing: `streams.api.client` (what every `lookout` command that
talks to a worker loads) must not pull in the route models, which import the query registry
and with it torch (seconds per CLI call). The names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.api.errors import ApiError, error_middleware, json_error
    from streams.api.openapi import RouteSpec

__all__ = ["ApiError", "RouteSpec", "error_middleware", "json_error"]

_HOME = {"ApiError": "streams.api.errors", "error_middleware": "streams.api.errors",
         "json_error": "streams.api.errors", "RouteSpec": "streams.api.openapi"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
