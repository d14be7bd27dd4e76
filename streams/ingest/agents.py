"""One Faust agent per modality: records -> adaptive batches -> the `BatchPipeline`.

The agent reads its stream with Faust's acks off and hands every event to a
`streams.ingest.flow.BatchFlow` (frames and audio chunks with their decoding already started
in the media threads: `BatchPipeline.start_decoding`): a batch is flushed as soon as the
encoder is idle,
`BatchPipeline.prepare` (an inference lane) runs for batch N+1 while
`BatchPipeline.complete` (dead letters, upsert, match, alert) runs for batch N, and the
agent acks a batch's events only after its `complete` returned, batches in order. Faust
commits only offsets whose events are acked, contiguously per partition, so nothing is
committed before it is in Redis (or dead-lettered) and alerted. If the agent stops (shutdown
cancels it) the events it holds are never acked (`hold_back` makes sure), so every batch
taken and not finished is consumed again by whoever owns the partition next.

`prepare` and `complete` settle every failure they can (dead letter, wait, record); should
anything still escape them (the dead-letter sink itself failing), the agent runs the same
stage of the same batch again with backoff rather than letting Faust's supervisor restart
it past the batch: records that are neither indexed nor dead-lettered are never skipped and
never committed past.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import faust

from encoders.modality import MODALITIES, Modality
from encoders.runtime import runs_on_cuda
from streams.config.settings import Settings
from streams.core.retry import Backoff, retry_until_done
from streams.ingest.flow import BatchFlow
from streams.ingest.pipeline import BatchPipeline, Decoding, PreparedBatch
from streams.ingest.records import ConsumedRecord

T = TypeVar("T")

log = logging.getLogger(__name__)


def consumed_record(event: Any) -> ConsumedRecord:
    """The parts of a Faust event the pipeline needs, as plain values."""
    msg = event.message
    headers = msg.headers or []
    if isinstance(headers, dict):
        headers = list(headers.items())
    ts = msg.timestamp
    return ConsumedRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        key=msg.key,
        value=msg.value,
        headers=[(str(k), bytes(v)) for k, v in headers if v is not None],
        timestamp_ms=None if ts is None else int(round(ts * 1000)),
    )


@dataclass(frozen=True, slots=True)
class Arrival:
    """An event as the flow holds it: its record, and that record's parse and decode
    started as it arrived (None: the batch decodes it)."""

    event: Any
    record: ConsumedRecord
    decoding: Decoding | None


def hold_back(events: Sequence[Any]) -> None:
    """Mark messages done without telling the consumer, so their offsets stay uncommitted.

    An acked-looking message is never acked again (not by any `finally` of Faust's on the
    way out either), so the commit stops before the gap.
    """
    for event in events:
        event.message.acked = True


def register_agents(app: faust.App, pipeline: BatchPipeline, settings: Settings) -> set[str]:
    """Create the input topics' agents; returns the input topic names."""
    names = set()
    for modality in MODALITIES:
        topic_name = settings.input_topic(modality)
        names.add(topic_name)
        topic = app.topic(topic_name, partitions=settings.partitions)
        agent = _indexing_agent(pipeline, modality, settings)
        app.agent(topic, name=f"lookout.index_{modality.value}")(agent)
    return names


def _indexing_agent(pipeline: BatchPipeline, modality: Modality, settings: Settings,
                    backoff: Backoff = Backoff(initial_s=1.0, max_s=60.0)) -> Any:
    max_batch = settings.batch_size(modality, runs_on_cuda(settings.device))
    label = modality.value

    async def stage(fn: Callable[[], Awaitable[T]], doing: str,
                    records: Sequence[ConsumedRecord]) -> T:
        return await retry_until_done(
            fn, op="batch", what=f"{doing} a {label} batch of {len(records)} records "
                                 f"(first {records[0].position})",
            backoff=backoff, transient=(Exception,), level=logging.ERROR)

    async def prepare(arrivals: list[Arrival]) -> tuple[list[ConsumedRecord], PreparedBatch]:
        records = [a.record for a in arrivals]
        decoding = [a.decoding for a in arrivals]
        prepared = await stage(lambda: pipeline.prepare(modality, records, decoding),
                               "preparing", records)
        return records, prepared

    async def complete(step: tuple[list[ConsumedRecord], PreparedBatch]) -> None:
        records, prepared = step
        await stage(lambda: pipeline.complete(prepared), "completing", records)

    async def index_records(stream: Any) -> None:
        async def ack(arrivals: Sequence[Arrival]) -> None:
            for arrival in arrivals:
                await stream.ack(arrival.event)

        flow: BatchFlow[Arrival, tuple[list[ConsumedRecord], PreparedBatch]] = BatchFlow(
            prepare=prepare, complete=complete, ack=ack, max_batch=max_batch,
            in_flight=settings.batches_in_flight(pipeline.inference.lanes),
            lanes=pipeline.inference.lanes,
            linger_s=settings.max_wait_s(modality))
        stream.enable_acks = False  # acked by the flow, after each batch completes
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(flow.run())
                async for event in stream.events():
                    record = consumed_record(event)
                    await flow.put(Arrival(event, record,
                                           pipeline.start_decoding(modality, record)))
                await flow.close()
            if flow.unacked:  # the flow ended early (cancelled from within): never skip
                raise RuntimeError(f"the {label} batch flow stopped with records unacked")
        except BaseException:
            held = flow.unacked
            hold_back([a.event for a in held])
            if held:
                log.warning("abandoned %d %s records (first %s); they will be consumed "
                            "again", len(held), label, held[0].record.position)
            raise

    index_records.__name__ = f"index_{modality.value}"
    index_records.__qualname__ = index_records.__name__
    return index_records
