"""One Faust agent per modality: take a micro-batch, hand it to the `BatchPipeline`, repeat.

Offsets: `Stream.take_events` acks a batch's events only when the loop asks for the next
batch, i.e. after `BatchPipeline.handle` returned (items in Redis, dead letters in Kafka, observers
done); Faust commits only offsets whose events are acked, contiguously per partition. If
the batch is abandoned (shutdown cancels it) `hold_back` keeps Faust from acking it on the
way out, so those records are consumed again by whoever owns the partition next.

`handle` settles every failure it can (dead letter, wait, record); should anything still
escape it (the dead-letter sink itself failing), the agent handles the same batch again
with backoff rather than letting Faust's supervisor restart it past the batch: records
that are neither indexed nor dead-lettered are never skipped and never committed past.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faust

from encoders.modality import MODALITIES, Modality
from encoders.runtime import runs_on_cuda
from streams.config.settings import Settings
from streams.core.retry import Backoff, retry_until_done
from streams.ingest.pipeline import BatchPipeline
from streams.ingest.records import ConsumedRecord

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


def hold_back(events: Sequence[Any]) -> None:
    """Mark messages done without telling the consumer, so their offsets stay uncommitted.

    `take_events` acks its buffered events in a `finally`, even when the loop body raised;
    an acked-looking message is never acked again, so the commit stops before the gap.
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
    within = settings.max_wait_s(modality)

    async def index_records(stream: faust.StreamT) -> None:
        async for events in stream.take_events(max_batch, within=within):
            records = [consumed_record(e) for e in events]
            first = records[0].position
            try:
                await retry_until_done(
                    lambda batch=records: pipeline.handle(modality, batch), op="batch",
                    what=f"handling a {modality.value} batch of {len(records)} records "
                         f"(first {first})",
                    backoff=backoff, transient=(Exception,), level=logging.ERROR,
                )
            except BaseException:
                hold_back(events)
                log.warning("abandoned a %s batch of %d records (first %s); it will be "
                            "consumed again", modality.value, len(events), first)
                raise

    index_records.__name__ = f"index_{modality.value}"
    index_records.__qualname__ = index_records.__name__
    return index_records
