"""The worker's status heartbeat: every few seconds, what it is and how it is doing, into
Redis for `GET /status` on any worker of the group (`streams.api.status`).

The counts come from the worker's own Prometheus counters, sampled on each beat: their
growth goes into a per-minute ring (`streams.core.window`), so "dead letters, last 60 min"
means the last hour, not everything since the worker started. Throughput is the growth of
`lookout_items_indexed_total` over the last minute of beats. Lag is this worker's share of
`lookout_consumer_lag` (its assigned partitions), so the group's is the sum.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Metric

from encoders.modality import MODALITIES
from streams.api.health import Readiness
from streams.api.models import ModalityStatus, WorkerStatus
from streams.api.status import WorkerDirectory
from streams.core.metrics import Metrics
from streams.core.periodic import every, start_task, stop_task
from streams.core.window import MINUTE_MS, MinuteRing, RecentRate, growth

log = logging.getLogger(__name__)

#: A worker missing this many beats in a row is taken for dead (its hash's TTL).
TTL_BEATS = 3


def instance_id(web_port: int) -> str:
    """`<host>:<web port>`: unique per running worker (two cannot share a port on one
    host), and the same again after a restart, which then replaces its own entry."""
    return f"{socket.gethostname()}:{web_port}"


def _samples(metric: Metric) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of a counter's `_total` samples or a gauge's values."""
    out = []
    for family in metric.collect():
        for s in family.samples:
            if s.name.endswith(("_created", "_bucket", "_count", "_sum")):
                continue
            out.append((s.labels, float(s.value)))
    return out


def cumulative_counts(metrics: Metrics) -> dict[str, float]:
    """The counters the status counts, flat: `consumed/<m>`, `indexed/<m>` and
    `deadletters/<m>/<reason>`."""
    out: dict[str, float] = {}
    for name, counter in (("consumed", metrics.records_consumed),
                          ("indexed", metrics.items_indexed)):
        for labels, value in _samples(counter):
            out[f"{name}/{labels['modality']}"] = value
    for labels, value in _samples(metrics.deadletters):
        out[f"deadletters/{labels['modality']}/{labels['reason']}"] = value
    return out


@dataclass
class Heartbeat:
    """Publishes this worker's `WorkerStatus` every `interval_s` with a TTL of
    `TTL_BEATS` beats; removes it when the worker stops."""

    directory: WorkerDirectory
    readiness: Readiness
    metrics: Metrics
    instance: str
    url: str
    #: input topic -> modality, to give the per-partition lag gauge a modality
    topics: Mapping[str, str]
    interval_s: float = 5.0
    encoders: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    started_at: int = 0  # ms since epoch; 0: now, by `clock`
    _ring: MinuteRing = field(default_factory=MinuteRing, init=False)
    _rate: RecentRate = field(default_factory=RecentRate, init=False)
    _previous: dict[str, float] = field(default_factory=dict, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.started_at = self.started_at or int(self.clock() * 1000)

    @property
    def ttl_s(self) -> float:
        return TTL_BEATS * self.interval_s

    def status(self) -> WorkerStatus:
        """Sample the counters (one step of the ring and the rate) and say where we are."""
        now_ms = int(self.clock() * 1000)
        totals = cumulative_counts(self.metrics)
        self._ring.add(now_ms // MINUTE_MS, growth(self._previous, totals))
        self._previous = totals
        hour = self._ring.totals(now_ms // MINUTE_MS)
        rates = self._rate.sample(self.monotonic(), {
            m.value: totals.get(f"indexed/{m.value}", 0.0) for m in MODALITIES})
        lag = self._lag()
        r = self.readiness
        return WorkerStatus(
            instance=self.instance, group=r.worker_id, host=socket.gethostname(), url=self.url,
            pid=os.getpid(), started_at=self.started_at, last_seen=now_ms, ready=r.ready,
            missing=r.missing() if not r.ready else [],
            assigned_partitions=r.assigned_partitions, encoders=dict(self.encoders),
            modalities={m.value: self._modality(m.value, hour, rates, lag) for m in MODALITIES})

    @staticmethod
    def _modality(m: str, hour: Mapping[str, float], rates: Mapping[str, float],
                  lag: Mapping[str, int]) -> ModalityStatus:
        dead_prefix = f"deadletters/{m}/"
        return ModalityStatus(
            rate=rates.get(m, 0.0), lag=lag.get(m, 0),
            consumed_last_hour=int(hour.get(f"consumed/{m}", 0)),
            indexed_last_hour=int(hour.get(f"indexed/{m}", 0)),
            deadletters_last_hour={k.removeprefix(dead_prefix): int(v) for k, v in
                                   sorted(hour.items()) if k.startswith(dead_prefix) and v})

    def _lag(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for labels, value in _samples(self.metrics.consumer_lag):
            modality = self.topics.get(labels.get("topic", ""))
            if modality is not None:
                out[modality] = out.get(modality, 0) + int(value)
        return out

    async def beat(self) -> None:
        await self.directory.publish(self.status(), self.ttl_s)

    async def run(self) -> None:
        """Beat until cancelled; a Redis outage only delays the next beat."""
        await every(self.interval_s, self.beat, "status heartbeat")

    def start(self) -> asyncio.Task[None]:
        self._task = start_task(self._task, self.run, "status-heartbeat")
        return self._task

    async def stop(self) -> None:
        """Stop beating and leave the group's status at once."""
        task, self._task = self._task, None
        await stop_task(task)
        try:
            await self.directory.remove(self.instance)
        except Exception as e:  # Redis may be gone already; the TTL then does it
            log.info("removing the status of %s: %s", self.instance, e)
