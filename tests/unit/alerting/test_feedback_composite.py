"""A verdict on a composite alert is recorded for the composite and teaches no member
(its item belongs to one member; the composite has no vectors)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from streams.alerting.alerts import Alert
from streams.alerting.feedback import FeedbackStore
from streams.core.metrics import Metrics


class _Pipe:
    def __init__(self, redis: _Redis) -> None:
        self.redis, self.calls = redis, []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append((name, args))

    async def execute(self) -> list[Any]:
        out = []
        for name, args in self.calls:
            if name == "lpush":
                self.redis.lists.setdefault(args[0], []).insert(0, args[1])
            elif name == "hset":
                self.redis.hashes.setdefault(args[0], {})[args[1]] = args[2]
            out.append(list(self.redis.hashes.get(args[0], {}).values()) if name == "hvals"
                       else self.redis.lists.get(args[0], [])[:10] if name == "lrange"
                       else None)
        return out


class _Redis:
    def __init__(self) -> None:
        self.lists: dict[str, list] = {}
        self.hashes: dict[str, dict] = {}

    def pipeline(self, transaction: bool = True) -> _Pipe:
        return _Pipe(self)


def test_a_verdict_on_a_composite_alert_is_recorded_and_teaches_nothing():
    alert = Alert.build(query_id="intrusion", item_key="video:t:0:5", query_name="intrusion",
                        modality="composite", source="cam-lobby", ts=1, score=0.9,
                        threshold=0.0, severity="critical")
    alerts = SimpleNamespace(get=lambda alert_id: asyncio.sleep(0, alert))
    registry = SimpleNamespace(find=lambda query_id: None)
    store = FeedbackStore(_Redis(), "t", alerts, registry,  # type: ignore[arg-type]
                          Metrics(CollectorRegistry()))
    record = asyncio.run(store.give(alert.alert_id, "confirmed", by="ops", note="", stores={}))
    assert record.query_id == "intrusion" and record.learned is False
    assert asyncio.run(store.summary("intrusion"))["confirmed"] == 1
