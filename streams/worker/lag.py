"""Periodic gauges the worker cannot update inline: consumer lag per partition and GPU memory.

Lag is computed for the partitions assigned to THIS worker (log end offset minus committed
offset), so summing `lookout_consumer_lag` over workers gives the group's lag without double
counting. Partitions that move away on a rebalance are removed from the gauge.

Wiring: `streams.worker.app.Worker` starts the monitor after the encoders are loaded (it
needs their devices) and stops it first on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.core.metrics import Metrics
from streams.core.periodic import every, start_task, stop_task

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class OffsetSource(Protocol):
    """Where the monitor reads positions from (the Faust consumer in the worker)."""

    def assigned(self) -> set[TopicPartition]: ...

    async def end_offsets(self, tps: set[TopicPartition]) -> Mapping[TopicPartition, int]: ...

    async def committed(self, tps: set[TopicPartition]) -> Mapping[TopicPartition, int | None]: ...


def partition_lag(
    end_offsets: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int | None],
    earliest: Mapping[TopicPartition, int] | None = None,
) -> dict[TopicPartition, int]:
    """Records behind the log end per partition; never negative.

    A partition with nothing committed yet counts from its earliest offset (0 when unknown):
    a new consumer group on a topic with history really is that far behind.
    """
    lag: dict[TopicPartition, int] = {}
    for tp, end in end_offsets.items():
        done = committed.get(tp)
        if done is None:
            done = (earliest or {}).get(tp, 0)
        lag[tp] = max(int(end) - int(done), 0)
    return lag


def cuda_memory_allocated(devices: Iterable[str]) -> dict[str, int]:
    """Bytes allocated by this process per CUDA device in `devices` (others are ignored)."""
    cuda = [d for d in devices if d.startswith("cuda")]
    if not cuda:
        return {}
    import torch

    if not torch.cuda.is_available():
        return {}
    return {d: int(torch.cuda.memory_allocated(torch.device(d))) for d in sorted(set(cuda))}


@dataclass
class LagMonitor:
    """Refreshes `lookout_consumer_lag` and `lookout_gpu_memory_bytes` every `interval_s`."""

    source: OffsetSource
    metrics: Metrics
    devices: tuple[str, ...] = ()
    interval_s: float = 5.0
    topics: frozenset[str] | None = None
    memory_probe: Callable[[Iterable[str]], dict[str, int]] = cuda_memory_allocated
    _exported: set[TopicPartition] = field(default_factory=set, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def refresh(self) -> dict[TopicPartition, int]:
        """One update of both gauges; returns the lag it exported."""
        tps = {tp for tp in self.source.assigned() if self.topics is None or tp[0] in self.topics}
        lag: dict[TopicPartition, int] = {}
        if tps:
            ends = await self.source.end_offsets(tps)
            committed = await self.source.committed(tps)
            lag = partition_lag(ends, committed)
        for topic, partition in self._exported - set(lag):
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(topic, str(partition))
        for (topic, partition), value in lag.items():
            self.metrics.consumer_lag.labels(topic=topic, partition=str(partition)).set(value)
        self._exported = set(lag)
        for device, used in self.memory_probe(self.devices).items():
            self.metrics.gpu_memory_bytes.labels(device=device).set(used)
        return lag

    async def run(self) -> None:
        """Refresh until cancelled; a metrics probe must never stop the worker."""
        await every(self.interval_s, self.refresh, "consumer lag refresh")

    def start(self) -> asyncio.Task[None]:
        self._task = start_task(self._task, self.run, "lag-monitor")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)


class FaustOffsets:
    """`OffsetSource` over a running Faust app's consumer (aiokafka driver)."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def _consumer(self) -> Any | None:
        # `app.consumer` is created lazily; before the worker starts there is nothing to read.
        return getattr(self._app, "_consumer", None) or None

    def assigned(self) -> set[TopicPartition]:
        consumer = self._consumer()
        if consumer is None:
            return set()
        try:
            return {(tp.topic, tp.partition) for tp in consumer.assignment()}
        except Exception:  # noqa: BLE001 - not started yet / rebalancing
            return set()

    async def end_offsets(self, tps: set[TopicPartition]) -> Mapping[TopicPartition, int]:
        from faust.types import TP

        consumer = self._consumer()
        if consumer is None:
            return {}
        ends = await consumer.highwaters(*(TP(t, p) for t, p in tps))
        return {(tp.topic, tp.partition): int(off) for tp, off in ends.items() if off is not None}

    async def committed(self, tps: set[TopicPartition]) -> Mapping[TopicPartition, int | None]:
        from faust.types import TP

        consumer = self._consumer()
        offsets = getattr(consumer, "_committed_offset", {}) if consumer is not None else {}
        # Faust keeps the last offset it committed (the next record to read); None = nothing yet.
        return {(t, p): offsets.get(TP(t, p)) for t, p in tps}
