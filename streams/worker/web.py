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
from faust.web import View

from streams.alerting.service import AlertingService
from streams.api import alerts, health, items, openapi, queries, search
from streams.api.health import Readiness
from streams.api.openapi import Handler, Route
from streams.core.metrics import Metrics


def api_routes(alerting: AlertingService, readiness: Readiness, metrics: Metrics) -> list[Route]:
    """Every route a worker serves, `/openapi.json` included (built from the others)."""
    served = [*health.routes(readiness, metrics.registry)]
    for area in (queries, search, alerts, items):
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
        name = "api" + re.sub(r"\W+", "_", path)
        app.page(path, name=name)(type(name, (View,), methods))


def _view_method(handler: Handler) -> Any:
    async def method(self: View, request: Any, **_match_info: Any) -> Any:
        return await handler(request)

    method.__doc__ = handler.__doc__
    return method


def _version() -> str:
    try:
        return version("lookout")
    except PackageNotFoundError:
        return "0"
