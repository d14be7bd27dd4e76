"""Bearer-token guard, JSON errors, health routes and the OpenAPI skeleton on a bare aiohttp app."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.api import auth, health, openapi
from streams.api.errors import ApiError, error_middleware
from streams.api.health import Readiness
from streams.api.openapi import RouteSpec, build_openapi
from streams.core.errors import ConfigError, QueryNotFound
from streams.core.metrics import Metrics


def _app(token: str | None, readiness: Readiness) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    if token:
        app.middlewares.append(auth.bearer_token_middleware(token))
    for route in health.routes(readiness, Metrics().registry):
        app.router.add_route(route.spec.method, route.spec.path, route.handler)

    async def missing(_: web.Request) -> web.Response:
        raise QueryNotFound("no standing query q1; list them with GET /queries")

    async def teapot(_: web.Request) -> web.Response:
        raise ApiError(418, "short and stout")

    async def crash(_: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app.router.add_get("/queries/q1", missing)
    app.router.add_get("/teapot", teapot)
    app.router.add_get("/crash", crash)
    for route in openapi.routes([RouteSpec("GET", "/queries/{id}", "Show a query.", "queries")],
                                version="1"):
        app.router.add_route(route.spec.method, route.spec.path, route.handler)
    return app


async def _requests(token: str | None, calls: list[tuple[str, dict]]) -> list[tuple[int, dict]]:
    readiness = Readiness(worker_id="w1", encoders_loaded=True, indexes_ensured=True)
    async with TestClient(TestServer(_app(token, readiness))) as client:
        out = []
        for path, headers in calls:
            if path == "!assign":
                readiness.assignment_received = True
                continue
            resp = await client.get(path, headers=headers)
            body = await resp.json() if resp.content_type == "application/json" else {}
            out.append((resp.status, body))
        return out


def test_token_guards_everything_but_health_and_metrics():
    good = {"Authorization": "Bearer s3cret"}
    results = asyncio.run(_requests("s3cret", [
        ("/healthz", {}), ("/metrics", {}), ("/readyz", {}),
        ("/queries/q1", {}), ("/queries/q1", {"Authorization": "Bearer wrong"}),
        ("/queries/q1", good), ("/openapi.json", {}), ("/openapi.json", good),
    ]))
    statuses = [s for s, _ in results]
    assert statuses == [200, 200, 503, 401, 401, 404, 401, 200]
    assert results[3][1] == {"error": results[3][1]["error"], "status": 401}
    assert "Bearer" in results[3][1]["error"]
    assert "GET /queries" in results[5][1]["error"]


def test_errors_are_json_with_status_and_readiness_says_what_is_missing():
    results = asyncio.run(_requests(None, [
        ("/readyz", {}), ("!assign", {}), ("/readyz", {}), ("/teapot", {}), ("/crash", {}),
        ("/nope", {}),
    ]))
    (s1, not_ready), (s2, ready), (s3, teapot), (s4, crash), (s5, nope) = results
    assert s1 == 503 and not_ready["ready"] is False
    assert any("assignment" in m for m in not_ready["missing"])
    assert s2 == 200 and ready["ready"] is True
    assert (s3, teapot) == (418, {"error": "short and stout", "status": 418})
    assert s4 == 500 and "worker log" in crash["error"]
    assert s5 == 404 and nope["status"] == 404


@pytest.mark.parametrize(("host", "token", "enforced"), [
    ("127.0.0.1", None, None), ("localhost", None, None), ("::1", None, None),
    ("127.0.0.1", "t", "t"), ("0.0.0.0", "t", "t"),
])
def test_required_token(host, token, enforced):
    assert auth.required_token(host, token) == enforced


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.org", ""])
def test_listening_beyond_loopback_without_a_token_is_refused(host):
    with pytest.raises(ConfigError, match="LOOKOUT_API_TOKEN"):
        auth.required_token(host, None)


def test_openapi_lists_each_operation_with_path_parameters_and_security():
    doc = build_openapi([RouteSpec("GET", "/items/{key}/thumb", "Thumbnail.", "items"),
                         *openapi.HEALTH_ROUTES], title="t", version="1")
    assert doc["openapi"].startswith("3.")
    op = doc["paths"]["/items/{key}/thumb"]["get"]
    assert op["parameters"][0]["name"] == "key"
    assert op["operationId"] == "get_items_key_thumb"
    assert op["security"] == [{"bearer": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
