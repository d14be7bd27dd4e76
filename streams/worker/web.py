"""The worker's HTTP API, registered through Faust's own web routing (`app.page`).

Every API area returns `Route`s (an OpenAPI `RouteSpec` bound to an aiohttp-style handler);
here each path becomes one Faust `View` whose methods call those handlers, so Faust's web
sensors see every request and `/openapi.json` lists exactly what is served.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import faust
from aiohttp import web
from faust.web import View

from streams.alerting.service import AlertingService
from streams.api import (
    alerts,
    composites,
    console,
    health,
    items,
    openapi,
    queries,
    search,
    status,
)
from streams.api.health import Readiness
from streams.api.openapi import Handler, Route
from streams.api.status import WorkerDirectory
from streams.core.metrics import Metrics

#: aiohttp refuses a request line over its 8,190-byte default with a plain-text 400 before
#: any middleware runs (it has no hook there), so the limit is raised: GET URLs up to this
#: many bytes reach the API and get its JSON answers. Longer ones still get aiohttp's text.
MAX_REQUEST_LINE_BYTES = 65_536
#: Faust's `web_application_options` (kwargs of the aiohttp `Application`). Bodies over
#: aiohttp's `client_max_size` (1 MiB) are refused with a JSON 413 by the error middleware.
APPLICATION_OPTIONS: dict[str, Any] = {
    "handler_args": {"max_line_size": MAX_REQUEST_LINE_BYTES},
}


def api_routes(alerting: AlertingService, readiness: Readiness, metrics: Metrics,
               directory: WorkerDirectory, *, token_required: bool = False,
               grafana_url: str | None = None, heartbeat_ttl_s: float = 15.0) -> list[Route]:
    """Every route a worker serves, `/openapi.json` included (built from the others);
    `token_required` tells the console to ask for the API token first; `directory` is where
    the group's heartbeats are (`GET /status`)."""
    served = [*health.routes(readiness, metrics.registry),
              *status.routes(directory, heartbeat_ttl_s),
              *console.routes(token_required=token_required, grafana_url=grafana_url)]
    for area in (queries, composites, search, alerts, items):
        served.extend(area.routes(alerting))
    specs = [r.spec for r in served if r.spec not in openapi.HEALTH_ROUTES]
    return [*served, *openapi.routes(specs, version=_version())]


def register_routes(app: faust.App, routes: Sequence[Route]) -> None:
    """One Faust view per path, with one method per route on it."""
    by_path: dict[str, list[Route]] = defaultdict(list)
    for route in routes:
        by_path[route.spec.path].append(route)
    for path, group in by_path.items():
        methods = {r.spec.method.lower(): _view_method(r.handler) for r in group}
        if "get" not in methods:  # Faust serves HEAD on every view; without GET it is a 405
            methods["head"] = _not_allowed(sorted(r.spec.method for r in group))
        name = "api" + re.sub(r"\W+", "_", path)
        app.page(path, name=name)(type(name, (View,), methods))


def _view_method(handler: Handler) -> Any:
    async def method(self: View, request: Any, **_match_info: Any) -> Any:
        return await handler(request)

    method.__doc__ = handler.__doc__
    return method


def _not_allowed(allowed: list[str]) -> Any:
    async def method(self: View, request: Any, **_match_info: Any) -> Any:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    return method


def _version() -> str:
    try:
        return version("lookout")
    except PackageNotFoundError:
        return "0"
