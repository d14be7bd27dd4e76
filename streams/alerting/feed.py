"""Live alerts for `GET /alerts/stream`: every worker follows the whole alerts topic.

An SSE client may be connected to any worker while the alert is raised on another, so
the feed reads the alerts topic itself (all partitions, no consumer group, starting at
the end when the worker starts) and fans each record out to the subscribers whose
filters (query id, severity, source glob) match. Slow subscribers lose their oldest
queued alerts rather than stalling the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streams.alerting.alerts import Alert
from streams.core.sources import matches as source_matches
from streams.kafka.admin import TopicLayout, assigned_consumer, ensure_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts a subscriber wants; None means any."""

    query_id: str | None = None
    severity: str | None = None
    source_glob: str | None = None

    def accepts(self, alert: Alert) -> bool:
        return (
            (self.query_id is None or alert.query_id == self.query_id)
            and (self.severity is None or alert.severity.value == self.severity)
            and (self.source_glob is None or source_matches(alert.source, [self.source_glob]))
        )


class AlertFeed:
    """Fans alerts out to in-process subscribers; fed by the topic follower (or directly)."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: dict[int, tuple[AlertFilter, asyncio.Queue[Alert | None]]] = {}
        self._next = 0
        self._queue_size = queue_size
        self._seen: dict[str, None] = {}
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, alert: Alert) -> None:
        if alert.alert_id in self._seen:  # the topic may carry a rare duplicate; hide it
            return
        self._seen[alert.alert_id] = None
        if len(self._seen) > 10_000:
            self._seen.pop(next(iter(self._seen)))
        for flt, queue in self._subscribers.values():
            if flt.accepts(alert):
                _put_dropping_oldest(queue, alert)

    def close(self) -> None:
        """The worker is stopping: every subscriber's queue gets None (the end), now and on
        any later subscribe, so stream handlers return instead of holding up the web
        server's shutdown until its timeout."""
        self._closed = True
        for _, queue in self._subscribers.values():
            _put_dropping_oldest(queue, None)

    @contextlib.asynccontextmanager
    async def subscribe(self, flt: AlertFilter) -> AsyncIterator[asyncio.Queue[Alert | None]]:
        """A queue of the alerts `flt` accepts; None in it means the feed closed."""
        self._next += 1
        token = self._next
        queue: asyncio.Queue[Alert | None] = asyncio.Queue(self._queue_size)
        if self._closed:
            queue.put_nowait(None)
        self._subscribers[token] = (flt, queue)
        try:
            yield queue
        finally:
            self._subscribers.pop(token, None)


def _put_dropping_oldest(queue: asyncio.Queue[Alert | None], item: Alert | None) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


class AlertTopicFollower:
    """Reads every partition of the alerts topic from its end and feeds an `AlertFeed`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        layout: TopicLayout,
        feed: AlertFeed,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._client_kwargs = dict(client_kwargs or {})
        self._topic = topic
        self._layout = layout
        self._feed = feed
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await ensure_topic(self._bootstrap, self._topic, self._layout, self._client_kwargs)
        self._consumer, ends = await assigned_consumer(
            self._bootstrap, self._topic, self._client_kwargs)
        tps = list(ends)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end position now, so alerts raised after start are seen
            await self._consumer.position(tp)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200)
            except asyncio.CancelledError:
                raise
            except KafkaError as e:
                log.warning("alert feed: reading %s failed: %s", self._topic, e)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for rec in records:
                    try:
                        self._feed.publish(Alert.model_validate_json(rec.value))
                    except ValidationError as e:
                        log.error("alert feed: unreadable record %s[%d]@%d: %s",
                                  rec.topic, rec.partition, rec.offset, e)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
