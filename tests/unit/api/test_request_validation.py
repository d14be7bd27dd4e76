"""Bad requests get a 4xx JSON error from the request models before any handler runs.

The routes are the real ones (`queries`, `search`, `alerts`, `items`) on a bare aiohttp app
with the error middleware; the service behind them is a stub that fails the test if a
request that should have been refused reaches it.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.api import alerts, items, queries, search
from streams.api.errors import error_middleware


class _Unreachable:
    """Any attribute use means a bad request got past validation."""

    started = True

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused request reached the service ({name})")


def _app() -> web.Application:
    service: Any = SimpleNamespace(registry=_Unreachable(), thresholds=_Unreachable(),
                                   index_stores={}, feedback=_Unreachable(),
                                   inference=_Unreachable(), alerts=_Unreachable(),
                                   feed=_Unreachable(), policy_states=_Unreachable())
    app = web.Application(middlewares=[error_middleware])
    for area in (queries, search, alerts, items):
        for route in area.routes(service):
            app.router.add_route(route.spec.method, route.spec.path, route.handler)
    return app


async def _send(method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with TestClient(TestServer(_app())) as client:
        resp = await client.request(method, path, **kwargs)
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json(), resp.headers


def send(method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    return asyncio.run(_send(method, path, **kwargs))


def _nested(depth: int) -> str:
    return '{"name": "x", "modality": "logs", "positives": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("path", ["/queries", "/search"])
def test_deeply_nested_json_is_a_400_not_a_recursion_error(path):
    status, body, _ = send("POST", path, data=_nested(100_000),
                           headers={"Content-Type": "application/json"})
    assert status == 400 and body == {"error": body["error"], "status": 400}
    assert "not valid JSON" in body["error"] and "recursion" in body["error"]


def test_a_query_with_more_examples_than_a_kafka_record_holds_is_413():
    status, body, _ = send("POST", "/queries", json={
        "name": "big", "modality": "logs", "positives": [f"p{i}" for i in range(20_000)]})
    assert status == 413, body
    assert "positives" in body["error"] and "at most" in body["error"]


@pytest.mark.parametrize("query", ["text=%20", "text=", "text=%20%09"])
def test_blank_search_text_is_a_400(query):
    status, body, _ = send("GET", f"/search?modality=logs&{query}")
    assert status == 400, body
    assert "text" in body["error"]


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"json": {"modality": "logs", "text": ["disk", "full"]}}, "text"),
    ({"json": {"modality": "logs", "text": "disk", "k": "5"}}, "k"),
    ({"json": {"modality": "logs", "text": "disk", "min_score": "high"}}, "min_score"),
    ({"json": {"modality": "logs", "text": "disk", "colour": "red"}}, "colour"),
    ({"json": {"modality": "smell", "text": "disk"}}, "unknown modality 'smell'"),
    ({"json": ["modality", "logs"]}, "JSON object"),
    ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, "not valid JSON"),
])
def test_search_body_types_are_strict(kwargs, needle):
    status, body, _ = send("POST", "/search", **kwargs)
    assert status == 400, body
    assert needle in body["error"]


@pytest.mark.parametrize(("query", "needle"), [
    ("modality=logs&text=a&text=b", "text is given 2 times"),
    ("modality=logs&text=a&k=0", "k must be >= 1"),
    ("modality=logs&text=a&k=ten", "k"),
    ("modality=logs&text=a&min_score=2", "min_score must be <= 1"),
    ("modality=logs&text=a&nope=1", "nope"),
])
def test_search_query_parameters_are_checked(query, needle):
    status, body, _ = send("GET", f"/search?{query}")
    assert status == 400, body
    assert needle in body["error"]


@pytest.mark.parametrize(("method", "path", "payload", "needle"), [
    ("PATCH", "/queries/q1", {"positives": ["a"]}, "PATCH cannot change"),
    ("PATCH", "/queries/q1", {"min_hits": "3"}, "min_hits"),
    ("POST", "/queries/q1/preview", {"limit": 0}, "limit must be >= 1"),
    ("POST", "/alerts/a1/feedback", {"verdict": "meh"}, "verdict"),
    ("GET", "/alerts?severity=loud", None, "unknown severity 'loud'"),
    ("GET", "/alerts/stream?severity=loud", None, "unknown severity 'loud'"),
    ("GET", "/queries/q1/explain?bins=1", None, "bins must be >= 5"),
])
def test_other_request_models_refuse_bad_input(method, path, payload, needle):
    status, body, _ = send(method, path, json=payload)
    assert status == 400, body
    assert needle in body["error"]


def test_a_method_a_path_does_not_serve_is_405_with_allow():
    status, body, headers = send("PUT", "/queries")
    assert status == 405 and body["status"] == 405
    assert set(headers["Allow"].split(",")) == {"GET", "POST"}


def test_bodies_over_the_size_limit_are_413_json():
    status, body, _ = send("POST", "/search", data=json.dumps({"text": "x" * 2_000_000}),
                           headers={"Content-Type": "application/json"})
    assert status == 413 and body["status"] == 413
