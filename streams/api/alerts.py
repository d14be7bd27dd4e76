"""`GET /alerts` (history from Redis) and `GET /alerts/stream` (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict

from aiohttp import web

from streams.alerting.feed import AlertFilter
from streams.alerting.service import AlertingService
from streams.api.models import (
    AlertFilterQuery,
    AlertHistoryQuery,
    AlertList,
    ErrorBody,
    FeedbackReply,
    FeedbackRequest,
)
from streams.api.openapi import Reply, Route, RouteSpec, bind
from streams.api.params import parse_time_ms, validated_as

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/alerts", "Alert history, newest first.", "alerts",
              operation_id="listAlerts", query=AlertHistoryQuery,
              responses={200: Reply("alerts, newest first", AlertList)}),
    RouteSpec("POST", "/alerts/{id}/feedback",
              "A person's verdict on an alert: false_alarm adds its item to the query's "
              "negatives, confirmed to its positives; the auto threshold is re-derived.",
              "alerts", operation_id="giveFeedback", body=FeedbackRequest,
              responses={200: Reply("recorded (learned: whether the item was still indexed)",
                                    FeedbackReply),
                         404: Reply("no such alert", ErrorBody)}),
    RouteSpec("GET", "/alerts/stream", "Live alerts as server-sent events (event: alert).",
              "alerts", operation_id="streamAlerts", query=AlertFilterQuery,
              responses={200: Reply("one `alert` event per alert (data: the alert JSON), "
                                    "`: keepalive` comments every 15 s",
                                    media_type="text/event-stream", schema={"type": "string"})}),
)
KEEPALIVE_S = 15.0


def alert_filter(params: AlertFilterQuery) -> AlertFilter:
    severity = params.severity.value if params.severity is not None else None
    return AlertFilter(params.query, severity, params.source)


def routes(service: AlertingService) -> list[Route]:
    async def history(request: web.Request) -> web.Response:
        params = validated_as(request, AlertHistoryQuery)
        flt = alert_filter(params)
        alerts = await service.alerts.history(
            query_id=flt.query_id, severity=flt.severity, source_glob=flt.source_glob,
            since_ms=parse_time_ms(params.since, "since"),
            until_ms=parse_time_ms(params.until, "until"), limit=params.limit,
        )
        return web.json_response({"alerts": [a.model_dump(mode="json") for a in alerts]})

    async def stream(request: web.Request) -> web.StreamResponse:
        flt = alert_filter(validated_as(request, AlertFilterQuery))
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
        body = validated_as(request, FeedbackRequest)
        record = await service.feedback.give(
            request.match_info["id"], body.verdict,
            by=body.by or request.headers.get("X-Lookout-User", ""),
            note=(body.note or "")[:500], stores=service.index_stores)
        return web.json_response(asdict(record))

    return bind(ROUTES, {("GET", "/alerts"): history, ("GET", "/alerts/stream"): stream,
                         ("POST", "/alerts/{id}/feedback"): feedback})
