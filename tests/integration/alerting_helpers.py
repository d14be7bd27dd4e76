"""Test-side receivers for alerting tests: a webhook server and an SSE client, in threads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from encoders.modality import Modality
from streams.alerting.webhooks import SIGNATURE_HEADER, verify_signature
from streams.config.settings import Settings
from streams.core.wire import encode_headers
from tests.helpers import free_port
from tests.integration.pipeline_records import produce, read_to_end
from tests.records import InputRecord


def call(base_url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON) of one API call."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


@dataclass
class WebhookReceiver:
    """An aiohttp server on a free port recording every POST (headers, raw body).

    `received_at[i]` is the `time.monotonic()` at which `received[i]` arrived. While
    `hanging`, a POST is counted in `hung` and left unanswered for 30 s, or until `stop()`
    (then 503): a receiver that is down from the sender's point of view. With a `secret` it verifies
    `X-Lookout-Signature` as docs/alerting.md tells receivers to (at its own `clock`,
    which a test can move): a bad or stale signature gets 401 and is kept in `refused`.
    """

    port: int = field(default_factory=free_port)
    fail_first: int = 0
    hanging: bool = False
    hung: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    secret: str | None = None
    clock: Callable[[], float] = time.time
    refused: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _released: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hanging:
            self.hung += 1
            assert self._released is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), 30.0)
            return web.Response(status=503)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        if self.secret is not None and not verify_signature(
                body, self.secret, request.headers.get(SIGNATURE_HEADER), now=self.clock()):
            self.refused.append((dict(request.headers), body))
            return web.Response(status=401)
        self.received_at.append(time.monotonic())
        self.received.append((dict(request.headers), body))
        return web.Response(status=204)

    def start(self) -> WebhookReceiver:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._released = asyncio.Event()
            app = web.Application()
            app.router.add_post("/hook", self._handle)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Answer any hung POST, then shut down: the runner's cleanup waits for handlers
        in flight, and a hung one would hold `stop()` for its whole join timeout (10 s)."""
        if self._loop is not None:
            if self._released is not None:
                self._loop.call_soon_threadsafe(self._released.set)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


@dataclass
class SseClient:
    """Reads `/alerts/stream` in a thread; `events` holds (received_at, alert dict)."""

    url: str
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    _resp: Any = None

    def start(self) -> SseClient:
        threading.Thread(target=self._run, daemon=True).start()
        assert self.connected.wait(15), f"SSE stream {self.url} did not connect"
        return self

    def _run(self) -> None:
        try:
            self._resp = urllib.request.urlopen(self.url, timeout=120)
        except OSError:
            return
        data = None
        try:
            for raw in self._resp:
                line = raw.decode().rstrip("\r\n")
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif not line and data is not None:
                    self.events.append((time.time(), data))
                    data = None
        except (OSError, AttributeError, ValueError):
            return  # closed by the test (or the worker went away)

    def close(self) -> None:
        """Shut the socket down, then close: the reader thread sits in a read that holds
        the response's buffer lock, so a bare close() waited for the stream's next line
        (a keep-alive comes every 15 s)."""
        if self._resp is None:
            return
        sock = getattr(getattr(self._resp.fp, "raw", None), "_sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self._resp.close()


def log_record(source: str, text: str, ts_ms: int | None = None) -> InputRecord:
    ts = ts_ms if ts_ms is not None else int(time.time() * 1000)
    return InputRecord(Modality.LOGS, source, ts, text.encode(), encode_headers("text/plain", ts))


def produce_logs(settings: Settings, lines: list[tuple[str, str]], ts_ms: int | None = None,
                 step_ms: int = 0) -> list[InputRecord]:
    records = [log_record(src, text, None if ts_ms is None else ts_ms + i * step_ms)
               for i, (src, text) in enumerate(lines)]
    produce(settings, records)
    return records


def alerts_on_topic(settings: Settings, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every alert on `<prefix>.alerts` now (up to the end offsets at the call, no waiting
    for quiet); `timeout_s` bounds the read."""
    return [json.loads(rec.value)
            for rec in read_to_end(settings, settings.topic("alerts"), timeout_s)]


def wait_for_alerts(settings: Settings, expected: int,
                    timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The alerts topic once it holds at least `expected` records (or at the deadline):
    the caller asserts the exact number, so an extra alert fails the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        alerts = alerts_on_topic(settings)
        if len(alerts) >= expected or time.monotonic() >= deadline:
            return alerts
        time.sleep(0.2)
