"""The worker's HTTP API on Faust's aiohttp server: shared errors, auth, health, OpenAPI.

Each area's `routes(...)` returns `Route`s: a `RouteSpec` (what `/openapi.json` shows) bound
to its handler. The worker registers them through Faust's own web API (`streams.worker.web`).
"""

from __future__ import annotations

from streams.api.errors import ApiError, error_middleware, json_error
from streams.api.openapi import RouteSpec

__all__ = ["ApiError", "RouteSpec", "error_middleware", "json_error"]
