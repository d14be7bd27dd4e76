"""`GET /metrics` says which exposition format its body is in, as Prometheus expects."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from streams.api import health
from streams.core.metrics import Metrics

#: What Prometheus 2.x sends when it scrapes (OpenMetrics preferred, text 0.0.4 accepted).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


async def _scrape(headers: dict[str, str]) -> tuple[str, str]:
    app = web.Application()
    for route in health.routes(health.Readiness(worker_id="w1"), Metrics().registry):
        app.router.add_route(route.spec.method, route.spec.path, route.handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 200
        return resp.headers["Content-Type"], await resp.text()


def test_plain_scrape_is_text_format_0_0_4() -> None:
    content_type, body = asyncio.run(_scrape({}))
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    names = {f.name for f in parse_text(body)}
    assert {"lookout_worker_up", "lookout_deadletters", "process_resident_memory_bytes"} <= names


def test_prometheus_gets_the_openmetrics_it_asks_for() -> None:
    content_type, body = asyncio.run(_scrape({"Accept": PROMETHEUS_ACCEPT}))
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n")
    assert "lookout_worker_up" in {f.name for f in parse_om(body)}
