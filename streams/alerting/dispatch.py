"""Webhook delivery driven by the alerts topic, so a crash never loses a delivery.

The alerts topic is the outbox: workers share the consumer group `<worker_id>.webhooks`
on it, deliver each alert to its query's webhooks, and commit the offsets of a fetched
batch only after every delivery of that batch finished (delivered, refused with a 4xx,
or out of retries). A worker killed mid-batch leaves the offsets uncommitted, so the
next owner of the partition delivers again; `WebhookSender` skips every (alert, url)
already recorded as delivered. What remains is at-least-once for the one POST a crash
cuts between the receiver's 2xx and that record: receivers dedupe by
`X-Lookout-Alert-Id`.

A partition the group has never committed on starts at its earliest offset, so alerts
raised while the first worker was still joining are not missed, and there (only there)
records older than `max_age_s` are skipped, so a new deployment does not replay a week
of history into the webhooks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from streams.alerting.alerts import Alert
from streams.alerting.webhooks import WebhookSender
from streams.core.metrics import Metrics
from streams.queries.model import Webhook

log = logging.getLogger(__name__)

Delivery = tuple[Alert, Webhook]


class WebhookDirectory(Protocol):
    """Where the dispatcher looks up a query's webhooks (the worker's query registry)."""

    def webhooks_of(self, query_id: str) -> list[Webhook]: ...

    async def catch_up(self, timeout_s: float = 5.0) -> bool: ...


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
        group_id: str,
        queries: WebhookDirectory,
        sender: WebhookSender,
        max_age_s: float,
        client_kwargs: dict[str, Any] | None = None,
        metrics: Metrics | None = None,
        batch_size: int = 100,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._group_id = group_id
        self._queries = queries
        self._sender = sender
        self._max_age_s = max_age_s
        self._client_kwargs = dict(client_kwargs or {})
        self._metrics = metrics
        self._batch_size = batch_size
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._had_commit: dict[TopicPartition, bool] = {}
        self._undelivered: dict[TopicPartition, int] = {}  # first offset not yet delivered

    async def start(self) -> None:
        """Join the group; the alerts topic must exist (the alert feed creates it first)."""
        self._consumer = AIOKafkaConsumer(
            self._topic, bootstrap_servers=self._bootstrap, group_id=self._group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", **self._client_kwargs,
        )
        await self._consumer.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let the batch in hand finish for up to `grace_s`; an unfinished one is redone
        by the partition's next owner (already delivered pairs are skipped)."""
        self._stopping = True
        if self._task is not None:
            await asyncio.wait([self._task], timeout=grace_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # never die silently: delivery would stop for good
                log.exception("webhooks: unexpected error; the batch stays uncommitted and "
                              "is tried again in 1 s")
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        assert self._consumer is not None
        try:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=self._batch_size)
        except KafkaError as e:
            log.warning("webhooks: reading %s failed: %s", self._topic, e)
            await asyncio.sleep(1.0)
            return
        for tp, recs in batches.items():
            self._undelivered[tp] = recs[0].offset
        self._report_backlog()
        if not batches:
            return
        try:
            pending = await self._deliveries(batches)
            while pending:
                pending = await self._deliver(pending)
                if pending:
                    await asyncio.sleep(1.0)  # Redis unreachable: try those again
        except BaseException:
            for tp, recs in batches.items():  # fetch them again on the next step
                if tp in self._consumer.assignment():
                    self._consumer.seek(tp, recs[0].offset)
            raise
        offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items()}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as e:
            # Partitions moved during the batch: the new owner redoes it, and pairs
            # recorded as delivered are skipped there.
            log.warning("webhooks: commit after delivery failed: %s", e)
        else:
            self._had_commit.update(dict.fromkeys(offsets, True))
        self._undelivered.update(offsets)
        self._report_backlog()

    async def _deliveries(self, batches: dict[TopicPartition, list[Any]]) -> list[Delivery]:
        """The (alert, webhook) pairs of a batch, each once."""
        assert self._consumer is not None
        # An alert raised on another worker may name a query (or webhooks) this worker's
        # registry has not read yet: catch up with the query topic first.
        if not await self._queries.catch_up():
            log.warning("webhooks: query registry not caught up; using the queries it has")
        now_ms = int(time.time() * 1000)
        pairs: dict[tuple[str, str], Delivery] = {}
        too_old = 0
        for tp, recs in batches.items():
            if tp not in self._had_commit:
                self._had_commit[tp] = await self._consumer.committed(tp) is not None
            new_partition = not self._had_commit[tp]
            for rec in recs:
                if new_partition and is_stale(rec.timestamp, now_ms, self._max_age_s):
                    too_old += 1
                    continue
                try:
                    alert = Alert.model_validate_json(rec.value)
                except ValidationError as e:
                    log.error("webhooks: unreadable alert record %s[%d]@%d: %s",
                              rec.topic, rec.partition, rec.offset, e)
                    continue
                for webhook in self._queries.webhooks_of(alert.query_id):
                    pairs.setdefault((alert.alert_id, webhook.url), (alert, webhook))
        if too_old:
            log.info("webhooks: skipped %d alerts older than %.0f s on a partition this "
                     "group never committed on", too_old, self._max_age_s)
            self._count("too_old", too_old)
        return list(pairs.values())

    async def _deliver(self, pairs: list[Delivery]) -> list[Delivery]:
        """Deliver concurrently; returns the pairs to try again (our own errors, e.g.
        Redis). Receiver failures are final here and counted by the sender."""
        results = await asyncio.gather(
            *(self._sender.deliver(alert, webhook) for alert, webhook in pairs),
            return_exceptions=True,
        )
        again = []
        for pair, result in zip(pairs, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("webhooks: delivering alert %s to %s was interrupted: %r",
                            pair[0].alert_id, pair[1].url, result)
                again.append(pair)
        return again

    def _report_backlog(self) -> None:
        """Alert records on this worker's partitions not delivered yet."""
        if self._metrics is None or self._consumer is None:
            return
        waiting = 0
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            start = self._undelivered.get(tp)
            if end is not None and start is not None:
                waiting += max(end - start, 0)
        self._metrics.webhook_backlog.set(waiting)

    def _count(self, outcome: str, n: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(outcome=outcome).inc(n)
