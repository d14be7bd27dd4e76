"""What a worker publishes about itself on each status heartbeat, and the group's sum."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from streams.api.health import Readiness
from streams.api.models import ModalityStatus, WorkerStatus
from streams.api.status import group_status
from streams.core.metrics import Metrics
from streams.worker.heartbeat import TTL_BEATS, Heartbeat

T0 = 1_790_000_000.0  # s since epoch, on a minute boundary or not: it does not matter


class Directory:
    """Records what the heartbeat writes instead of Redis."""

    def __init__(self) -> None:
        self.published: list[tuple[WorkerStatus, float]] = []
        self.removed: list[str] = []

    async def publish(self, status: WorkerStatus, ttl_s: float) -> None:
        self.published.append((status, ttl_s))

    async def remove(self, instance: str) -> None:
        self.removed.append(instance)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _heartbeat(metrics: Metrics, clock: Clock, directory: Any = None) -> Heartbeat:
    readiness = Readiness(worker_id="group-a", encoders_loaded=True, indexes_ensured=True,
                          assignment_received=True, assigned_partitions=2)
    return Heartbeat(directory or Directory(), readiness, metrics, instance="host-1:6066",
                     url="http://127.0.0.1:6066", topics={"lk.logs": "logs", "lk.audio": "audio"},
                     interval_s=2.0, clock=clock, monotonic=clock)


def test_dead_letters_count_for_the_last_hour_not_since_the_worker_started() -> None:
    metrics, clock = Metrics(CollectorRegistry()), Clock()
    beat = _heartbeat(metrics, clock)
    metrics.deadletters.labels(modality="logs", reason="decode").inc(3)
    assert beat.status().modalities["logs"].deadletters_last_hour == {"decode": 3}
    clock.t += 30 * 60
    metrics.deadletters.labels(modality="logs", reason="wire_format").inc()
    metrics.deadletters.labels(modality="logs", reason="decode").inc()
    assert beat.status().modalities["logs"].deadletters_last_hour == {
        "decode": 4, "wire_format": 1}
    clock.t += 40 * 60  # the first three are more than an hour old now
    assert beat.status().modalities["logs"].deadletters_last_hour == {
        "decode": 1, "wire_format": 1}
    clock.t += 61 * 60
    status = beat.status()
    assert status.modalities["logs"].deadletters_last_hour == {}
    assert status.modalities["video"] == ModalityStatus()


def test_throughput_lag_and_who_the_worker_is() -> None:
    metrics, clock = Metrics(CollectorRegistry()), Clock()
    beat = _heartbeat(metrics, clock)
    beat.encoders = {"logs": "minilm-8cdaccac@cpu"}
    beat.status()
    metrics.items_indexed.labels(modality="logs").inc(100)
    metrics.records_consumed.labels(modality="logs").inc(101)
    metrics.consumer_lag.labels(topic="lk.logs", partition="0").set(7)
    metrics.consumer_lag.labels(topic="lk.logs", partition="1").set(5)
    metrics.consumer_lag.labels(topic="elsewhere", partition="0").set(1000)
    clock.t += 10
    status = beat.status()
    logs = status.modalities["logs"]
    assert (logs.rate, logs.lag, logs.indexed_last_hour, logs.consumed_last_hour) == \
        (10.0, 12, 100, 101)
    assert status.instance == "host-1:6066" and status.group == "group-a"
    assert status.ready and status.missing == [] and status.assigned_partitions == 2
    assert status.encoders == {"logs": "minilm-8cdaccac@cpu"}
    assert status.last_seen == int(clock.t * 1000) and status.started_at <= status.last_seen


def test_an_unready_worker_says_what_is_missing() -> None:
    beat = _heartbeat(Metrics(CollectorRegistry()), Clock())
    beat.readiness.unreachable["Redis"] = "connection refused"
    status = beat.status()
    assert not status.ready
    assert status.missing == ["Redis is unreachable: connection refused"]


def test_beats_carry_a_ttl_of_a_few_beats_and_stopping_leaves_the_group() -> None:
    directory = Directory()
    beat = _heartbeat(Metrics(CollectorRegistry()), Clock(), directory)

    async def scenario() -> None:
        beat.start()
        while not directory.published:
            await asyncio.sleep(0.01)
        await beat.stop()

    asyncio.run(scenario())
    assert directory.published[0][1] == TTL_BEATS * 2.0
    assert directory.removed == ["host-1:6066"]


def test_the_group_adds_its_workers_up() -> None:
    def worker(name: str, logs: ModalityStatus) -> WorkerStatus:
        return WorkerStatus(instance=name, group="g", host="h", url="u", pid=1, started_at=0,
                            last_seen=1, ready=True, modalities={"logs": logs})

    group = group_status([
        worker("a", ModalityStatus(rate=1.5, lag=2, indexed_last_hour=10,
                                   deadletters_last_hour={"decode": 1})),
        worker("b", ModalityStatus(rate=2.0, lag=3, indexed_last_hour=5,
                                   deadletters_last_hour={"decode": 2, "encode": 1})),
    ], ttl_s=15.0)
    assert group.modalities["logs"] == ModalityStatus(
        rate=3.5, lag=5, indexed_last_hour=15, deadletters_last_hour={"decode": 3, "encode": 1})
    assert [w.instance for w in group.workers] == ["a", "b"] and group.heartbeat_ttl_s == 15.0
