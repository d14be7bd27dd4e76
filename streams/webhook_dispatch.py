"""Webhook delivery driven by the alerts topic, so a crash never loses a delivery.

The alerts topic is the outbox: workers share the consumer group `<worker_id>.webhooks`
on it, deliver each alert to its query's webhooks, and commit the offsets of a fetched
batch only after every delivery of that batch finished (delivered, refused with a 4xx,
or out of retries). A worker killed mid-batch leaves the offsets uncommitted, so the
next owner of the partition delivers again; `WebhookSender` skips every (alert, url)
already recorded as delivered. What remains is at-least-once for the one POST a crash
cuts between the receiver's 2xx and that record: receivers dedupe by
`X-Lookout-Alert-Id`.

A new group starts at the earliest offset so alerts raised while the first worker was
still joining are not missed, and skips records older than `max_age_s` so a new
deployment does not replay a week of history into the webhooks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from streams.alerts import Alert
from streams.metrics import Metrics
from streams.standing_queries import Webhook
from streams.topic_admin import ensure_topic
from streams.webhooks import WebhookSender

log = logging.getLogger(__name__)

#: Looks up the webhooks of a standing query by id; empty when it has none or is gone.
WebhooksOf = Callable[[str], list[Webhook]]


def webhook_group(worker_id: str) -> str:
    """Consumer group of the webhook dispatchers of one worker group."""
    return f"{worker_id}.webhooks"


def is_stale(record_ts_ms: int, now_ms: int, max_age_s: float) -> bool:
    """True when an alert record was written more than `max_age_s` before now."""
    return now_ms - record_ts_ms > max_age_s * 1000


class WebhookDispatcher:
    """Consumes the alerts topic in a consumer group and delivers every alert's webhooks."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        group_id: str,
        webhooks_of: WebhooksOf,
        sender: WebhookSender,
        max_age_s: float,
        client_kwargs: dict[str, Any] | None = None,
        batch_size: int = 100,
        metrics: Metrics | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._partitions = partitions
        self._group_id = group_id
        self._webhooks_of = webhooks_of
        self._sender = sender
        self._max_age_s = max_age_s
        self._client_kwargs = dict(client_kwargs or {})
        self._batch_size = batch_size
        self._metrics = metrics
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._busy = asyncio.Event()

    async def start(self) -> None:
        await ensure_topic(self._bootstrap, self._topic, self._partitions, self._client_kwargs)
        self._consumer = AIOKafkaConsumer(
            self._topic, bootstrap_servers=self._bootstrap, group_id=self._group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", **self._client_kwargs,
        )
        await self._consumer.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let the batch in hand finish for up to `grace_s`; an unfinished one is redone
        by the partition's next owner (already delivered pairs are skipped)."""
        if self._task is not None:
            if self._busy.is_set():
                await asyncio.wait([self._task], timeout=grace_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=500, max_records=self._batch_size)
            except KafkaError as e:
                log.warning("webhooks: reading %s failed: %s", self._topic, e)
                await asyncio.sleep(1.0)
                continue
            records = [rec for recs in batches.values() for rec in recs]
            await self._report_backlog(in_hand=len(records))
            if not records:
                continue
            self._busy.set()
            try:
                while not await self._deliver_all(records):
                    await asyncio.sleep(1.0)  # Redis unreachable: retry, delivered pairs skip
                offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items()}
                try:
                    await self._consumer.commit(offsets)
                except (CommitFailedError, KafkaError) as e:
                    # Partitions moved during the batch: the new owner redoes it, and
                    # pairs recorded as delivered are skipped there.
                    log.warning("webhooks: commit after delivery failed: %s", e)
            finally:
                self._busy.clear()

    async def _report_backlog(self, in_hand: int) -> None:
        """Records fetched but not yet delivered, plus those not fetched yet."""
        if self._metrics is None or self._consumer is None:
            return
        waiting = in_hand
        try:
            for tp in self._consumer.assignment():
                end = self._consumer.highwater(tp)
                if end is not None:
                    waiting += max(end - await self._consumer.position(tp), 0)
        except KafkaError:  # a partition moved away meanwhile: report on the next poll
            return
        self._metrics.webhook_backlog.set(waiting)

    async def _deliver_all(self, records: list[Any]) -> bool:
        """Deliver a batch; False when a delivery failed for a reason of our own (Redis)."""
        now_ms = int(time.time() * 1000)
        deliveries = []
        for rec in records:
            if is_stale(rec.timestamp, now_ms, self._max_age_s):
                continue
            try:
                alert = Alert.model_validate_json(rec.value)
            except ValidationError as e:
                log.error("webhooks: unreadable alert record %s[%d]@%d: %s",
                          rec.topic, rec.partition, rec.offset, e)
                continue
            for webhook in self._webhooks_of(alert.query_id):
                deliveries.append(self._sender.deliver(alert, webhook))
        # A slow receiver delays only its batch; receiver failures are counted in the sender.
        errors = [r for r in await asyncio.gather(*deliveries, return_exceptions=True)
                  if isinstance(r, BaseException)]
        for e in errors:
            log.warning("webhooks: delivery interrupted, retrying the batch: %r", e)
        return not errors
