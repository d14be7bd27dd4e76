"""`GET /openapi.json`, assembled from the `RouteSpec`s every API module contributes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class RouteSpec:
    """One operation as OpenAPI shows it; `auth` says whether the bearer token applies."""

    method: str
    path: str
    summary: str
    tag: str = "worker"
    auth: bool = True
    request_body: dict[str, Any] | None = None
    query_params: tuple[str, ...] = ()
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """A documented operation and the aiohttp-style handler that serves it."""

    spec: RouteSpec
    handler: Handler


def bind(specs: Iterable[RouteSpec], handlers: Mapping[tuple[str, str], Handler]) -> list[Route]:
    """Pair each spec with its handler by (method, path); a spec or handler left over is a bug,
    so the OpenAPI document and the served routes cannot drift apart."""
    specs = list(specs)
    keys = {(s.method, s.path) for s in specs}
    if keys != set(handlers):
        raise ValueError(f"routes and specs differ: {sorted(keys ^ set(handlers))}")
    return [Route(s, handlers[(s.method, s.path)]) for s in specs]


HEALTH_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/healthz", "Liveness: the worker's event loop answers.", "health",
              auth=False),
    RouteSpec("GET", "/readyz", "Readiness: partitions assigned and indexes ensured.", "health",
              auth=False, responses={200: "ready", 503: "not ready; body says what is missing"}),
    RouteSpec("GET", "/metrics", "Prometheus metrics (text exposition format).", "health",
              auth=False),
    RouteSpec("GET", "/openapi.json", "This document.", "meta"),
)


def build_openapi(specs: Iterable[RouteSpec], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.0 document with one operation per spec."""
    error_schema = {
        "type": "object",
        "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        path = _PARAM.sub(r"{\1}", spec.path)
        op: dict[str, Any] = {
            "summary": spec.summary,
            "tags": [spec.tag],
            "responses": {
                str(code): {"description": text} for code, text in sorted(spec.responses.items())
            },
        }
        op["responses"].setdefault(
            "default",
            {"description": "error",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        )
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(spec.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in spec.query_params
        ]
        if params:
            op["parameters"] = params
        if spec.request_body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": spec.request_body}},
            }
        op["security"] = [{"bearer": []}] if spec.auth else []
        paths.setdefault(path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": error_schema},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def routes(specs: list[RouteSpec], *, version: str) -> list[Route]:
    """Serve the document built from `specs` (read at request time, so late additions show)."""

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(
            build_openapi([*HEALTH_ROUTES, *specs], title="Lookout worker API", version=version)
        )

    return [Route(HEALTH_ROUTES[-1], openapi)]
