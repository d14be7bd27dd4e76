"""Adaptive batching and the overlapped batch flow, as plain code (no Kafka, no encoder)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.ingest.flow import AdaptiveBatcher, BatchFlow

Record = tuple[int, int]  # (partition, sequence within the partition)


@settings(max_examples=300, deadline=None)
@given(
    max_batch=st.integers(1, 8),
    arrivals=st.lists(st.lists(st.integers(0, 2), max_size=12), max_size=40),
    costs=st.lists(st.integers(1, 5), min_size=1, max_size=10),
)
def test_any_arrival_pattern_loses_duplicates_and_reorders_nothing(max_batch, arrivals, costs):
    """Ticks of a simulated clock: records arrive (those the batcher cannot take yet wait
    upstream, as in Kafka), and an encoder busy for `costs` ticks per batch takes a batch
    whenever it is idle. Every record comes out once, in arrival order, in batches of at
    most `max_batch`, and no record ever waits while the encoder is idle."""
    batcher: AdaptiveBatcher[Record] = AdaptiveBatcher(max_batch)
    upstream: list[Record] = []
    sent: list[Record] = []
    batches: list[list[Record]] = []
    seq = [0, 0, 0]
    busy_until = 0

    def tick(now: int) -> None:
        nonlocal busy_until
        while upstream and not batcher.full:
            batcher.add(upstream.pop(0))
        idle = now >= busy_until
        if batcher.should_flush(encoder_idle=idle):
            batches.append(batcher.take())
            busy_until = now + costs[len(batches) % len(costs)]
        assert not (now >= busy_until and len(batcher)), "a record waits for an idle encoder"

    now = 0
    for now, partitions in enumerate(arrivals):
        for p in partitions:
            upstream.append((p, seq[p]))
            sent.append((p, seq[p]))
            seq[p] += 1
        tick(now)
    while upstream or len(batcher):
        now += 1
        tick(now)
    assert [r for b in batches for r in b] == sent
    assert all(1 <= len(b) <= max_batch for b in batches)


def test_the_batch_grows_only_while_the_encoder_is_busy():
    batcher: AdaptiveBatcher[int] = AdaptiveBatcher(4)
    batcher.add(1)
    assert batcher.should_flush(encoder_idle=True)
    assert not batcher.should_flush(encoder_idle=False)
    for i in (2, 3, 4):
        batcher.add(i)
    assert batcher.full and batcher.take() == [1, 2, 3, 4]
    with pytest.raises(OverflowError):
        for i in range(5):
            batcher.add(i)


class _Stages:
    """prepare/complete/ack that record the order of events; a stage can be held until
    released, so tests wait on conditions, not on time."""

    def __init__(self) -> None:
        self.log: list[tuple[str, list[int]]] = []
        self.acked: list[int] = []
        self.hold_prepare: dict[int, asyncio.Event] = {}  # by first record of the batch
        self.hold_complete: dict[int, asyncio.Event] = {}
        self.changed = asyncio.Condition()

    async def _note(self, entry: tuple[str, list[int]]) -> None:
        async with self.changed:
            self.log.append(entry)
            self.changed.notify_all()

    async def prepare(self, batch: list[int]) -> list[int]:
        await self._note(("prepare", batch))
        if batch[0] in self.hold_prepare:
            await self.hold_prepare[batch[0]].wait()
        await self._note(("prepared", batch))
        return batch

    async def complete(self, batch: list[int]) -> None:
        await self._note(("complete", batch))
        if batch[0] in self.hold_complete:
            await self.hold_complete[batch[0]].wait()
        await self._note(("completed", batch))

    async def ack(self, batch: Sequence[int]) -> None:
        self.acked.extend(batch)
        await self._note(("ack", list(batch)))

    async def seen(self, entry: tuple[str, list[int]]) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: entry in self.log)

    def flow(self, max_batch: int, in_flight: int = 2,
             lanes: int = 1) -> BatchFlow[int, list[int]]:
        return BatchFlow(prepare=self.prepare, complete=self.complete, ack=self.ack,
                         max_batch=max_batch, in_flight=in_flight, lanes=lanes)


async def _quiet() -> None:
    """Let every task that can run, run (they wait on conditions afterwards)."""
    for _ in range(50):
        await asyncio.sleep(0)


def test_a_record_is_flushed_at_once_when_the_encoder_is_idle_and_the_batch_grows_while_busy():
    async def scenario() -> _Stages:
        stages = _Stages()
        stages.hold_prepare[0] = asyncio.Event()
        flow = stages.flow(max_batch=8)
        runner = asyncio.create_task(flow.run())
        await flow.put(0)
        await _quiet()  # no timer: only the tasks that were ready ran
        assert ("prepare", [0]) in stages.log  # flushed alone, at once
        for i in range(1, 6):
            await flow.put(i)  # the encoder is busy: these wait together
        stages.hold_prepare[0].set()
        await stages.seen(("prepare", [1, 2, 3, 4, 5]))
        await flow.close()
        await runner
        return stages

    stages = asyncio.run(scenario())
    assert stages.acked == [0, 1, 2, 3, 4, 5]


def test_batch_n_plus_1_is_encoded_while_batch_n_is_written_and_acks_wait_for_writes():
    async def scenario() -> None:
        stages = _Stages()
        stages.hold_complete[0] = asyncio.Event()
        flow = stages.flow(max_batch=2)
        runner = asyncio.create_task(flow.run())
        await flow.put(0)
        await stages.seen(("complete", [0]))
        await flow.put(1)
        await flow.put(2)
        await stages.seen(("prepared", [1, 2]))  # overlap: encoded while [0] is written
        await _quiet()
        assert stages.acked == []  # nothing acked before its write
        assert ("prepare", [3]) not in stages.log  # in flight: [0] and [1, 2], no third
        assert ("complete", [1, 2]) not in stages.log  # writes in batch order
        await flow.put(3)
        stages.hold_complete[0].set()
        await flow.close()
        await runner
        assert stages.acked == [0, 1, 2, 3]
        assert stages.log.index(("completed", [0])) < stages.log.index(("ack", [0]))

    asyncio.run(scenario())


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), max_batch=st.integers(1, 6), in_flight=st.integers(1, 4),
       lanes=st.integers(1, 3), yields=st.lists(st.integers(0, 5), min_size=1, max_size=20))
def test_acks_are_in_order_once_each_and_only_after_their_batch_completed(
        n, max_batch, in_flight, lanes, yields):
    """Whatever order prepares finish in (lanes > 1 lets later batches overtake), every
    record is acked once, in order, after its own batch completed; at most `lanes`
    batches (and never all `in_flight` of them) are prepared at once."""
    async def scenario() -> None:
        acked: list[int] = []
        completed: set[int] = set()
        turns = itertools.cycle(yields)
        preparing = [0, 0]  # now, most ever

        async def prepare(batch: list[int]) -> list[int]:
            preparing[0] += 1
            preparing[1] = max(preparing)
            for _ in range(next(turns)):
                await asyncio.sleep(0)
            preparing[0] -= 1
            return batch

        async def complete(batch: list[int]) -> None:
            assert not completed & set(batch) and all(i in completed for i in range(batch[0]))
            for _ in range(next(turns)):
                await asyncio.sleep(0)
            completed.update(batch)

        async def ack(batch: Sequence[int]) -> None:
            assert set(batch) <= completed
            acked.extend(batch)

        flow = BatchFlow(prepare=prepare, complete=complete, ack=ack, max_batch=max_batch,
                         in_flight=in_flight, lanes=lanes)
        runner = asyncio.create_task(flow.run())
        for i in range(n):
            await flow.put(i)
            assert len(flow.unacked) <= max_batch * (in_flight + 1)
        await flow.close()
        await runner
        assert acked == list(range(n)) and flow.unacked == []
        assert preparing[1] <= min(lanes, max(1, in_flight - 1))

    asyncio.run(scenario())


def test_with_two_lanes_two_batches_are_prepared_at_once_and_still_complete_in_order():
    async def scenario() -> _Stages:
        stages = _Stages()
        stages.hold_prepare[0] = asyncio.Event()
        flow = stages.flow(max_batch=2, in_flight=3, lanes=2)
        runner = asyncio.create_task(flow.run())
        await flow.put(0)
        await stages.seen(("prepare", [0]))  # held: one lane busy
        await flow.put(1)
        async with asyncio.timeout(30):  # fails, rather than hangs, with one lane
            await stages.seen(("prepared", [1]))  # the other lane takes it at once
        await _quiet()
        assert ("complete", [1]) not in stages.log  # waits for batch [0]
        await flow.put(2)
        await _quiet()
        assert ("prepare", [2]) in stages.log  # [1] is prepared, so its lane is free again
        stages.hold_prepare[0].set()
        await flow.close()
        await runner
        return stages

    stages = asyncio.run(scenario())
    assert stages.acked == [0, 1, 2]
    completes = [batch for what, batch in stages.log if what == "complete"]
    assert completes == [[0], [1], [2]]


def test_a_crash_with_batches_in_flight_leaves_every_unfinished_record_unacked():
    async def scenario() -> None:
        stages = _Stages()
        stages.hold_complete[2] = asyncio.Event()
        flow = stages.flow(max_batch=2)
        runner = asyncio.create_task(flow.run())
        for i in range(2):
            await flow.put(i)
        await stages.seen(("ack", [0, 1]))
        for i in range(2, 7):
            await flow.put(i)
        await stages.seen(("prepared", [4, 5]))
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        assert stages.acked == [0, 1]
        assert flow.unacked == [2, 3, 4, 5, 6]

    asyncio.run(scenario())


def test_with_a_linger_time_a_full_batch_and_the_last_records_still_flush_at_once():
    """`linger_s` (the old fixed window, a setting) only holds back a partial batch."""
    async def scenario() -> _Stages:
        stages = _Stages()
        flow = BatchFlow(prepare=stages.prepare, complete=stages.complete, ack=stages.ack,
                         max_batch=2, linger_s=3600)
        runner = asyncio.create_task(flow.run())
        for i in range(3):
            await flow.put(i)
        await stages.seen(("ack", [0, 1]))
        await _quiet()
        assert ("prepare", [2]) not in stages.log  # partial: lingers
        await flow.close()
        await runner
        return stages

    assert asyncio.run(scenario()).acked == [0, 1, 2]
