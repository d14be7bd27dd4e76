"""`GET /alerts/stream` honours Last-Event-ID: the alerts recorded after that id come first
(filtered like the live ones), then the live feed, each alert once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.alerting.alerts import Alert
from streams.alerting.feed import AlertFeed
from streams.api import alerts as alerts_api
from streams.api.errors import error_middleware


def _alert(item: str, query_id: str = "q", severity: str = "warning") -> Alert:
    return Alert.build(query_id=query_id, item_key=item, query_name="n", modality="logs",
                       source="app-1", ts=1, score=0.9, threshold=0.5, severity=severity)


class _History:
    """`AlertStore.recorded_since` over a list in recorded order."""

    def __init__(self, recorded: list[Alert], limit: int | None = None) -> None:
        self.recorded = recorded
        self.limit = limit
        self.asked: list[str] = []

    async def recorded_since(self, alert_id: str, limit: int):
        self.asked.append(alert_id)
        ids = [a.alert_id for a in self.recorded]
        if alert_id not in ids:
            return None
        after = self.recorded[ids.index(alert_id) + 1:]
        limit = self.limit or limit
        return after[-limit:], len(after) > limit


def _app(feed: AlertFeed, history: _History) -> web.Application:
    """The alert routes over `feed` and `history`, as a worker serves them."""
    service = SimpleNamespace(feed=feed, alerts=history, feedback=None, index_stores={})
    app = web.Application(middlewares=[error_middleware])
    for route in alerts_api.routes(service):
        app.router.add_route(route.spec.method, route.spec.path, route.handler)
    return app


async def _read_stream(history: _History, headers: dict[str, str], path: str = "",
                       live: tuple[Alert, ...] = ()) -> list[str]:
    """The SSE lines up to and including the first live alert's event (or the replay's end)."""
    feed = AlertFeed()
    async with TestClient(TestServer(_app(feed, history))) as client:
        resp = await client.get("/alerts/stream" + path, headers=headers)
        lines: list[str] = []
        want_live = {a.alert_id for a in live}
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            lines.append(line)
            if line.startswith(": replayed") or line.startswith(": last-event-id"):
                for a in live:
                    feed.publish(a)
                if not want_live:
                    return lines
            if line.startswith("id: ") and line[4:] in want_live:
                want_live.discard(line[4:])
                if not want_live:
                    return lines


def _ids(lines: list[str]) -> list[str]:
    return [line[4:] for line in lines if line.startswith("id: ")]


def test_a_reconnect_gets_what_was_recorded_after_its_last_id_then_live_alerts_once():
    a, b, c, d = (_alert(x) for x in "abcd")
    history = _History([a, b, c])
    # c is in the history *and* arrives live (raised during the reconnect): sent once
    lines = asyncio.run(_read_stream(history, {"Last-Event-ID": a.alert_id}, live=(c, d)))
    assert history.asked == [a.alert_id]
    assert _ids(lines) == [b.alert_id, c.alert_id, d.alert_id]
    assert ": replayed 2" in lines
    assert lines[lines.index(f"id: {b.alert_id}") + 1] == "event: alert"
    assert lines[lines.index(f"id: {b.alert_id}") + 2] == "data: " + b.to_bytes().decode()


def test_the_replay_keeps_the_stream_filter():
    a, b = _alert("a"), _alert("b")
    other, loud = _alert("x", query_id="other"), _alert("y", severity="critical")
    lines = asyncio.run(_read_stream(_History([a, other, b, loud]),
                                     {"Last-Event-ID": a.alert_id}, "?query=q&severity=warning"))
    assert _ids(lines) == [b.alert_id]


def test_an_unknown_last_id_says_so_and_goes_on_live():
    live = _alert("live")
    lines = asyncio.run(_read_stream(_History([_alert("a")]), {"Last-Event-ID": "gone"},
                                     live=(live,)))
    assert any("not in the alert history" in line for line in lines)
    assert _ids(lines) == [live.alert_id]


def test_more_missed_alerts_than_the_replay_holds_are_announced():
    first, *rest = [_alert(str(i)) for i in range(5)]
    lines = asyncio.run(_read_stream(_History([first, *rest], limit=2),
                                     {"Last-Event-ID": first.alert_id}))
    assert _ids(lines) == [a.alert_id for a in rest[-2:]]
    assert any("are left out" in line for line in lines)


def test_without_last_event_id_nothing_is_replayed():
    history = _History([_alert("a")])
    live = _alert("b")

    async def run() -> list[str]:
        feed = AlertFeed()
        async with TestClient(TestServer(_app(feed, history))) as client:
            resp = await client.get("/alerts/stream")
            assert (await resp.content.readline()) == b": connected\n"
            feed.publish(live)
            await resp.content.readline()
            return [(await resp.content.readline()).decode().strip()]

    assert asyncio.run(run()) == [f"id: {live.alert_id}"]
    assert history.asked == []


def test_the_stream_ends_when_the_feed_closes():
    async def run() -> bytes:
        feed = AlertFeed()
        async with TestClient(TestServer(_app(feed, _History([])))) as client:
            resp = await client.get("/alerts/stream")
            assert (await resp.content.readline()) == b": connected\n"
            feed.close()
            return await asyncio.wait_for(resp.content.read(), 5)

    assert asyncio.run(run()).startswith(b"\n")  # the rest of the stream: it ended
