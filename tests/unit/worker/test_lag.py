"""Consumer-lag arithmetic and the gauges the lag monitor keeps in step with the assignment."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streams.core.metrics import Metrics
from streams.worker.lag import LagMonitor, TopicPartition, partition_lag


def test_lag_is_end_minus_committed() -> None:
    lag = partition_lag({("t", 0): 100, ("t", 1): 50}, {("t", 0): 40, ("t", 1): 50})
    assert lag == {("t", 0): 60, ("t", 1): 0}


def test_uncommitted_partition_counts_from_earliest() -> None:
    assert partition_lag({("t", 0): 100}, {("t", 0): None}) == {("t", 0): 100}
    assert partition_lag({("t", 0): 100}, {}, earliest={("t", 0): 30}) == {("t", 0): 70}


@given(st.integers(0, 10**12), st.one_of(st.none(), st.integers(0, 10**12)))
def test_lag_is_never_negative(end: int, committed: int | None) -> None:
    (value,) = partition_lag({("t", 0): end}, {("t", 0): committed}).values()
    assert 0 <= value <= end


class Positions:
    """An `OffsetSource` whose assignment and offsets the test sets directly."""

    def __init__(self) -> None:
        self.ends: dict[TopicPartition, int] = {}
        self.commits: dict[TopicPartition, int | None] = {}

    def assigned(self) -> set[TopicPartition]:
        return set(self.ends)

    async def end_offsets(self, tps: set[TopicPartition]) -> Mapping[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def committed(self, tps: set[TopicPartition]) -> Mapping[TopicPartition, int | None]:
        return {tp: self.commits.get(tp) for tp in tps}


def gauge(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    out = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_refresh_exports_assigned_partitions_and_drops_revoked_ones() -> None:
    metrics = Metrics(CollectorRegistry())
    positions = Positions()
    positions.ends = {("lookout.logs", 0): 10, ("lookout.logs", 1): 7, ("other", 0): 99}
    positions.commits = {("lookout.logs", 0): 4}
    monitor = LagMonitor(positions, metrics, topics=frozenset({"lookout.logs"}),
                         memory_probe=lambda devices: {})
    asyncio.run(monitor.refresh())
    assert gauge(metrics, "lookout_consumer_lag") == {
        (("partition", "0"), ("topic", "lookout.logs")): 6.0,
        (("partition", "1"), ("topic", "lookout.logs")): 7.0,
    }
    del positions.ends[("lookout.logs", 1)]  # rebalanced away
    asyncio.run(monitor.refresh())
    assert gauge(metrics, "lookout_consumer_lag") == {
        (("partition", "0"), ("topic", "lookout.logs")): 6.0,
    }


def test_gpu_memory_is_exported_per_device() -> None:
    metrics = Metrics(CollectorRegistry())
    seen: list[tuple[str, ...]] = []

    def probe(devices):
        seen.append(tuple(devices))
        return {"cuda:0": 1234}

    monitor = LagMonitor(Positions(), metrics, devices=("cuda:0",), memory_probe=probe)
    asyncio.run(monitor.refresh())
    assert seen == [("cuda:0",)]
    assert gauge(metrics, "lookout_gpu_memory_bytes") == {(("device", "cuda:0"),): 1234.0}


def test_cpu_only_worker_reports_no_gpu_memory() -> None:
    from streams.worker.lag import cuda_memory_allocated

    assert cuda_memory_allocated(["cpu"]) == {}


def test_run_survives_a_failing_refresh_and_stops_on_cancel() -> None:
    class Flaky(Positions):
        calls = 0

        def assigned(self) -> set[TopicPartition]:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("rebalancing")
            return set()

    async def scenario() -> None:
        monitor = LagMonitor(Flaky(), Metrics(CollectorRegistry()), interval_s=0.01,
                             memory_probe=lambda devices: {})
        monitor.start()
        while Flaky.calls < 3:
            await asyncio.sleep(0.01)
        await monitor.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert Flaky.calls >= 3
