"""`GET /alerts` (history from Redis) and `GET /alerts/stream` (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict

from aiohttp import web

from streams.alerting.feed import AlertFilter
from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.openapi import Route, RouteSpec, bind
from streams.api.params import json_body, parse_int, parse_time_ms
from streams.queries.model import Severity

FILTERS = ("query", "severity", "source")
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/alerts", "Alert history, newest first.", "alerts",
              query_params=(*FILTERS, "since", "until", "limit")),
    RouteSpec("POST", "/alerts/{id}/feedback",
              "A person's verdict on an alert: false_alarm adds its item to the query's "
              "negatives, confirmed to its positives; the auto threshold is re-derived.",
              "alerts", request_body={"type": "object", "required": ["verdict"], "properties": {
                  "verdict": {"type": "string", "enum": ["false_alarm", "confirmed"]},
                  "by": {"type": "string"}, "note": {"type": "string"}}},
              responses={200: "recorded (learned: whether the item was still indexed)",
                         404: "no such alert"}),
    RouteSpec("GET", "/alerts/stream", "Live alerts as server-sent events (event: alert).",
              "alerts", query_params=FILTERS,
              responses={200: "text/event-stream; one `alert` event per alert"}),
)
KEEPALIVE_S = 15.0


def parse_filter(request: web.Request) -> AlertFilter:
    severity = request.query.get("severity") or None
    if severity is not None and severity not in {s.value for s in Severity}:
        raise ApiError(400, f"unknown severity {severity!r}; use info, warning or critical")
    return AlertFilter(request.query.get("query") or None, severity,
                       request.query.get("source") or None)


def routes(service: AlertingService) -> list[Route]:
    async def history(request: web.Request) -> web.Response:
        flt = parse_filter(request)
        alerts = await service.alerts.history(
            query_id=flt.query_id, severity=flt.severity, source_glob=flt.source_glob,
            since_ms=parse_time_ms(request.query.get("since"), "since"),
            until_ms=parse_time_ms(request.query.get("until"), "until"),
            limit=parse_int(request.query.get("limit"), "limit", 100, 1, 10_000),
        )
        return web.json_response({"alerts": [a.model_dump(mode="json") for a in alerts]})

    async def stream(request: web.Request) -> web.StreamResponse:
        flt = parse_filter(request)
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        await resp.prepare(request)
        async with service.feed.subscribe(flt) as queue:
            await resp.write(b": connected\n\n")
            with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
                while True:
                    try:
                        alert = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        await resp.write(b": keepalive\n\n")
                        continue
                    data = alert.to_bytes().decode()
                    await resp.write(
                        f"id: {alert.alert_id}\nevent: alert\ndata: {data}\n\n".encode())
        return resp

    async def feedback(request: web.Request) -> web.Response:
        body = await json_body(request)
        record = await service.feedback.give(
            request.match_info["id"], str(body.get("verdict", "")),
            by=str(body.get("by") or request.headers.get("X-Lookout-User", "")),
            note=str(body.get("note") or "")[:500], stores=service.index_stores)
        return web.json_response(asdict(record))

    return bind(ROUTES, {("GET", "/alerts"): history, ("GET", "/alerts/stream"): stream,
                         ("POST", "/alerts/{id}/feedback"): feedback})
