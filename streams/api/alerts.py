"""`GET /alerts` (history from Redis) and `GET /alerts/stream` (server-sent events).

A reconnecting stream client sends the last id it saw as `Last-Event-ID`; the alerts
recorded after it (Redis history, by when they were recorded) are replayed before the live
ones. The stream subscribes to the live feed before reading that history, so an alert
raised during the reconnect comes once (from either, never both). One gap remains: an alert
already on the topic before the subscription but recorded in Redis only after the history
read (the milliseconds between the broker's ack and the record) is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict

from aiohttp import web

from streams.alerting.alerts import Alert
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
    RouteSpec("GET", "/alerts/stream",
              "Live alerts as server-sent events (event: alert, id: the alert id). With a "
              "Last-Event-ID header, the alerts recorded after that one are sent first.",
              "alerts", operation_id="streamAlerts", query=AlertFilterQuery,
              responses={200: Reply("one `alert` event per alert (data: the alert JSON), "
                                    "`: keepalive` comments every 15 s",
                                    media_type="text/event-stream", schema={"type": "string"})}),
)
KEEPALIVE_S = 15.0
#: Alerts a reconnecting client gets back at most (`Last-Event-ID`); the feed's queue size.
REPLAY_MAX = 1000


def alert_filter(params: AlertFilterQuery) -> AlertFilter:
    severity = params.severity.value if params.severity is not None else None
    return AlertFilter(params.query, severity, params.source)


def sse_event(alert: Alert) -> bytes:
    """One `alert` event; its id is what a reconnecting client sends as Last-Event-ID."""
    return f"id: {alert.alert_id}\nevent: alert\ndata: {alert.to_bytes().decode()}\n\n".encode()


async def _replay(resp: web.StreamResponse, service: AlertingService, flt: AlertFilter,
                  last_id: str) -> set[str]:
    """Send what a client that last saw `last_id` missed, from the alert history (oldest
    first); a comment says when that is impossible. Returns the ids sent."""
    found = await service.alerts.recorded_since(last_id, REPLAY_MAX)
    if found is None:
        await resp.write(b": last-event-id not in the alert history (expired or unknown); "
                         b"live alerts only\n\n")
        return set()
    alerts, left_out = found
    if left_out:
        await resp.write(f": more than {REPLAY_MAX} alerts since last-event-id; "
                         "the oldest are left out (GET /alerts has them)\n\n".encode())
    sent = set()
    for alert in alerts:
        if flt.accepts(alert):
            await resp.write(sse_event(alert))
            sent.add(alert.alert_id)
    await resp.write(f": replayed {len(sent)}\n\n".encode())
    return sent


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
        last_id = request.headers.get("Last-Event-ID", "").strip()
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })
        await resp.prepare(request)
        # Subscribe before reading the history, so an alert raised meanwhile is in the queue.
        async with service.feed.subscribe(flt) as queue:
            await resp.write(b": connected\n\n")
            with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
                sent = await _replay(resp, service, flt, last_id) if last_id else set()
                while True:
                    try:
                        alert = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        await resp.write(b": keepalive\n\n")
                        continue
                    if alert is None:  # the worker is stopping
                        break
                    if alert.alert_id not in sent:
                        await resp.write(sse_event(alert))
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
