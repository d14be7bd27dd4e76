"""Which alert records the webhook dispatcher delivers, and under which consumer group."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from streams.alerting.alerts import Alert
from streams.alerting.dispatch import WebhookDispatcher, is_stale, webhook_group
from streams.core.metrics import Metrics
from streams.queries.model import Webhook


def test_dispatchers_of_one_worker_group_share_their_own_consumer_group():
    assert webhook_group("lookout-worker") == "lookout-worker.webhooks"
    assert webhook_group("a") != webhook_group("b")


def test_an_alert_exactly_max_age_old_is_still_sent_one_ms_more_is_not():
    now = 1_700_000_000_000
    assert not is_stale(now - 3_600_000, now, 3600)
    assert is_stale(now - 3_600_001, now, 3600)


@given(age_ms=st.integers(-10_000, 10**9), max_age_s=st.floats(0.001, 10**6))
def test_stale_means_older_than_max_age(age_ms: int, max_age_s: float):
    now = 1_800_000_000_000
    assert is_stale(now - age_ms, now, max_age_s) == (age_ms > max_age_s * 1000)


# --- which deliveries a fetched batch makes --------------------------------------------

NOW_MS = int(time.time() * 1000)
HOOK = Webhook(url="http://receiver.example/hook")
OTHER = Webhook(url="http://other.example/hook")


def _alert(n: int, query_id: str = "disk") -> Alert:
    return Alert.build(query_id=query_id, item_key=f"lookout:item:logs:h:0:{n}", query_name="d",
                       modality="logs", source="h", ts=NOW_MS, score=0.9, threshold=0.5,
                       severity="warning", labels={}, evidence={})


def _record(offset: int, alert: Alert | bytes, age_s: float = 0.0, partition: int = 0):
    value = alert if isinstance(alert, bytes) else alert.to_bytes()
    return SimpleNamespace(topic="t.alerts", partition=partition, offset=offset, value=value,
                           timestamp=NOW_MS - int(age_s * 1000))


class Queries:
    def __init__(self, hooks: dict[str, list[Webhook]]) -> None:
        self.hooks, self.caught_up = hooks, 0

    def webhooks_of(self, query_id: str) -> list[Webhook]:
        assert self.caught_up, "webhooks looked up before catching up with the query topic"
        return self.hooks.get(query_id, [])

    async def catch_up(self, timeout_s: float = 5.0) -> bool:
        self.caught_up += 1
        return True


class Committed:
    """The consumer's view of the group's committed offsets (None: never committed)."""

    def __init__(self, offsets: dict[int, int | None]) -> None:
        self.offsets = offsets

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.offsets[tp.partition]


def _dispatcher(queries: Queries, committed: dict[int, int | None],
                metrics: Metrics | None = None) -> WebhookDispatcher:
    d = WebhookDispatcher("unused:9092", "t.alerts", "g.webhooks", queries,
                          sender=None, max_age_s=3600, metrics=metrics)  # type: ignore[arg-type]
    d._consumer = Committed(committed)  # type: ignore[assignment]
    return d


def test_old_alerts_are_skipped_only_where_the_group_never_committed():
    metrics = Metrics()
    old, fresh = _alert(1), _alert(2)
    d = _dispatcher(Queries({"disk": [HOOK]}), {0: None, 1: 17}, metrics)
    batches = {TopicPartition("t.alerts", 0): [_record(0, old, age_s=7200), _record(1, fresh)],
               TopicPartition("t.alerts", 1): [_record(17, _alert(3), age_s=7200, partition=1)]}
    pairs = asyncio.run(d._deliveries(batches))
    assert sorted(a.alert_id for a, _ in pairs) == sorted([fresh.alert_id, _alert(3).alert_id])
    assert metrics.webhook_deliveries.labels(outcome="too_old")._value.get() == 1


def test_each_alert_and_url_is_delivered_once_per_batch_and_unreadable_records_skipped():
    queries = Queries({"disk": [HOOK, OTHER, HOOK], "cpu": []})
    d = _dispatcher(queries, {0: 3})
    a = _alert(1)
    batch = {TopicPartition("t.alerts", 0): [
        _record(3, a), _record(4, a), _record(5, b"{not json"), _record(6, _alert(2, "cpu")),
        _record(7, _alert(3, "deleted-query"))]}
    pairs = asyncio.run(d._deliveries(batch))
    assert [(al.alert_id, w.url) for al, w in pairs] == [(a.alert_id, HOOK.url),
                                                        (a.alert_id, OTHER.url)]
    assert queries.caught_up == 1


class FlakySender:
    """Delivers, except that the first call for `flaky_url` raises (Redis went away)."""

    def __init__(self, flaky_url: str) -> None:
        self.flaky_url, self.calls = flaky_url, []

    async def deliver(self, alert: Alert, webhook: Webhook) -> bool:
        self.calls.append(webhook.url)
        if webhook.url == self.flaky_url and self.calls.count(webhook.url) == 1:
            raise ConnectionError("redis unreachable")
        return webhook.url != "http://refuses.example/"


def test_only_deliveries_that_raised_are_tried_again():
    sender = FlakySender(OTHER.url)
    d = WebhookDispatcher("unused:9092", "t.alerts", "g", Queries({}), sender,  # type: ignore[arg-type]
                          max_age_s=3600)
    refused = Webhook(url="http://refuses.example/")
    pairs = [(_alert(1), HOOK), (_alert(1), OTHER), (_alert(1), refused)]
    again = asyncio.run(d._deliver(pairs))
    assert [w.url for _, w in again] == [OTHER.url]  # a refusal is final, an error is not
    assert asyncio.run(d._deliver(again)) == []
