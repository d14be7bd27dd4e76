"""The worker's HTTP API on Faust's aiohttp server: shared errors, auth, health, OpenAPI.

Each area contributes aiohttp routes (through `WorkerContext.web_routes`) and `RouteSpec`s
for `/openapi.json` (through `WorkerContext.route_specs`).
"""

from __future__ import annotations

from streams.api.errors import ApiError, error_middleware, json_error
from streams.api.openapi import RouteSpec

__all__ = ["ApiError", "RouteSpec", "error_middleware", "json_error"]
