"""`/composites` and `/sites` on a bare aiohttp app with the error middleware, in front of a
registry whose query topic is applied at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.api import composites
from streams.api.errors import error_middleware
from tests.registry_stub import logs_registry


class _States:
    def __init__(self) -> None:
        self.forgotten: list[str] = []

    async def forget(self, composite_id: str) -> None:
        self.forgotten.append(composite_id)


def _app(service: Any) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    for route in composites.routes(service):
        app.router.add_route(route.spec.method, route.spec.path, route.handler)
    return app


def exchange(requests: list[tuple[str, str, Any]]) -> list[tuple[int, Any]]:
    service = SimpleNamespace(registry=logs_registry("glass", "person"),
                              policy_states=_States())
    service.registry._task = object()  # "started": the stub has no follower task

    async def run() -> list[tuple[int, Any]]:
        async with TestClient(TestServer(_app(service))) as client:
            out = []
            for method, path, body in requests:
                resp = await client.request(method, path, json=body)
                out.append((resp.status, await resp.json()))
            return out

    return asyncio.run(run())


INTRUSION = {"kind": "composite", "name": "intrusion", "all_of": ["glass", "person"],
             "within_s": 10, "group_by": "site", "suppress_members": True}


def test_register_list_show_replace_delete():
    (created, listed, shown, replaced, deleted, gone) = exchange([
        ("POST", "/composites", INTRUSION), ("GET", "/composites", None),
        ("GET", "/composites/intrusion", None),
        ("POST", "/composites", {**INTRUSION, "within_s": 5}),
        ("DELETE", "/composites/intrusion", None), ("GET", "/composites/intrusion", None)])
    assert created[0] == 201 and created[1]["members"] == ["glass", "person"]
    assert [c["id"] for c in listed[1]["composites"]] == ["intrusion"]
    assert shown[1]["mode"] == "all_of" and shown[1]["suppress_members"] is True
    assert replaced[0] == 200 and replaced[1]["within_s"] == 5
    assert deleted == (200, {"deleted": "intrusion"}) and gone[0] == 404


def test_bad_composites_are_4xx_json_saying_what_to_fix():
    answers = exchange([
        ("POST", "/composites", {**INTRUSION, "all_of": ["glass", "ghost"]}),
        ("POST", "/composites", {**INTRUSION, "within_s": 0}),
        ("POST", "/composites", {**INTRUSION, "all_of": ["intrusion", "glass"]}),
        ("POST", "/composites", {**INTRUSION, "group_by": "floor"}),
    ])
    assert [status for status, _ in answers] == [400, 400, 400, 400]
    assert "unknown member queries ['ghost']" in answers[0][1]["error"]
    assert "within_s must be > 0" in answers[1][1]["error"]
    assert "its own member" in answers[2][1]["error"]
    assert "group_by" in answers[3][1]["error"]


def test_site_map_put_and_get():
    (put, got, bad) = exchange([
        ("PUT", "/sites", {"sites": {"lobby": ["cam-lobby", "door-*"]}}),
        ("GET", "/sites", None), ("PUT", "/sites", {"sites": {"lobby": []}})])
    assert put[0] == 200 and got[1] == {"sites": [
        {"name": "lobby", "sources": ["cam-lobby", "door-*"], "labels": {}}]}
    assert bad[0] == 400 and "sources" in bad[1]["error"]
