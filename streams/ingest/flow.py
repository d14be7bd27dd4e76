"""How one agent's records become batches: adaptive batching and overlapped stages.

`AdaptiveBatcher` is the pure rule (the dynamic batcher of inference servers): records
wait in arrival order; the moment the encoder is idle, everything waiting (up to
`max_batch`) is one batch. While the encoder is busy the waiting batch grows, so batches
are small at a low rate (latency) and full under load (throughput), with no fixed window.

`BatchFlow` drives it with two stages per batch: `prepare` (parse, decode, encode: an
inference lane) and `complete` (dead letters, upsert, match, alert: awaits on the loop),
then `ack`. Batch N+1 is prepared while batch N completes, but completions and acks run
strictly one after another in batch order, and a batch is acked only after its own
completion returned: an offset is never committed before its upsert (or dead letter) and
its alerts, and a crash redelivers every batch taken but not yet acked.

At most `in_flight` batches are between take and ack, and at most `lanes` of them are
being prepared at once (never more than `in_flight - 1`, so one can always be writing).
`lanes` is how many batches the worker's inference pool embeds at once
(`streams.core.inference.InferencePool`): on a CPU two single-threaded lanes embed 1.2-1.4x
the items/s of one lane with two torch threads (docs/deploy.md, "Inference lanes"), and
the encoder counts as idle while a lane is free. Batches may finish preparing in any
order; their completions still run in batch order. `in_flight` 1 means no overlap (the
serial pipeline, kept as a setting to measure against).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

E = TypeVar("E")
P = TypeVar("P")


class AdaptiveBatcher(Generic[E]):
    """Records waiting for the encoder, in arrival order; pure, no clock, no I/O."""

    def __init__(self, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.max_batch = max_batch
        self._waiting: deque[E] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def full(self) -> bool:
        """A whole batch waits: flush at once, take no more until it is taken."""
        return len(self._waiting) >= self.max_batch

    def add(self, record: E) -> None:
        if self.full:
            raise OverflowError("the batcher is full; take a batch first")
        self._waiting.append(record)

    def should_flush(self, encoder_idle: bool, lingered: bool = True) -> bool:
        """Flush when the encoder is idle and records wait (after `lingered`, which is
        always true without a linger time); while it is busy, keep growing the batch."""
        return encoder_idle and bool(self._waiting) and (lingered or self.full)

    def take(self) -> list[E]:
        """The oldest waiting records, at most `max_batch`."""
        n = min(self.max_batch, len(self._waiting))
        return [self._waiting.popleft() for _ in range(n)]


def preparing_lanes(lanes: int, in_flight: int) -> int:
    """How many of `lanes` a flow with `in_flight` batches can keep busy: one batch must
    be left to write, so at most `in_flight - 1`, and always one."""
    return max(1, min(lanes, in_flight - 1))


class BatchFlow(Generic[E, P]):
    """Feeds `put` records through `prepare` -> `complete` -> `ack`, batch by batch."""

    def __init__(
        self,
        *,
        prepare: Callable[[list[E]], Awaitable[P]],
        complete: Callable[[P], Awaitable[None]],
        ack: Callable[[Sequence[E]], Awaitable[None]],
        max_batch: int,
        in_flight: int = 2,
        lanes: int = 1,
        linger_s: float = 0.0,
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, not {in_flight}")
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes}")
        self._prepare, self._complete, self._ack = prepare, complete, ack
        self._batcher: AdaptiveBatcher[E] = AdaptiveBatcher(max_batch)
        self.in_flight_limit = in_flight
        self.lanes = preparing_lanes(lanes, in_flight)
        self._preparing = 0
        self.linger_s = linger_s
        self._in_flight: list[list[E]] = []  # taken, not yet acked, oldest first
        self._changed = asyncio.Condition()
        self._closed = False

    @property
    def unacked(self) -> list[E]:
        """Every record put and not yet acked: in flight first, then waiting."""
        return [e for batch in self._in_flight for e in batch] + list(self._batcher._waiting)

    async def put(self, record: E) -> None:
        """Queue a record; waits while a whole batch already waits (backpressure)."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._batcher.full)
            self._batcher.add(record)
            self._changed.notify_all()

    async def close(self) -> None:
        """No more records: `run` flushes what waits and returns once all is acked."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def run(self) -> None:
        """Take batches while a lane is free, prepare each in its own task, and hand it to
        its completion, which waits for the one before; returns after `close` once
        everything is acked."""
        async with asyncio.TaskGroup() as tasks:
            previous: asyncio.Task[None] | None = None
            while (batch := await self._next_batch()) is not None:
                preparing = tasks.create_task(self._prepare_in_lane(batch))
                previous = tasks.create_task(self._finish(previous, batch, preparing))

    async def _next_batch(self) -> list[E] | None:
        """Waits for a free slot and records to flush (or for the end)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: len(self._in_flight) < self.in_flight_limit
                and self._preparing < self.lanes
                and (len(self._batcher) > 0 or self._closed))
            if self.linger_s > 0 and not self._batcher.full and not self._closed:
                await self._linger()
            if not self._batcher.should_flush(encoder_idle=True):
                return None  # closed, nothing left
            batch = self._batcher.take()
            self._in_flight.append(batch)
            self._preparing += 1  # taken by `_prepare_in_lane` at once
            self._changed.notify_all()  # room to put again
            return batch

    async def _prepare_in_lane(self, batch: list[E]) -> P:
        try:
            return await self._prepare(batch)
        finally:
            async with self._changed:
                self._preparing -= 1  # a lane is free: the next batch may be taken
                self._changed.notify_all()

    async def _linger(self) -> None:
        """The windowed batching of old (a setting): wait up to `linger_s` for a full
        batch before flushing a partial one."""
        try:
            await asyncio.wait_for(self._changed.wait_for(
                lambda: self._batcher.full or self._closed), self.linger_s)
        except TimeoutError:
            pass

    async def _finish(self, previous: asyncio.Task[None] | None, batch: list[E],
                      preparing: asyncio.Task[P]) -> None:
        prepared = await preparing
        if previous is not None:
            await previous  # completions and acks in batch order
        await self._complete(prepared)
        await self._ack(batch)
        async with self._changed:
            self._in_flight.pop(0)  # this batch: they finish in order
            self._changed.notify_all()
