"""What happens to one micro-batch before its offsets may be committed.

`BatchPipeline.handle` runs the pure steps of `streams.ingest.batch` in the worker's single
inference thread, sends dead letters to Kafka, upserts the items into Redis, then hands
them to every `BatchObserver` (alerting). Only when it returns may the agent ack the batch.
Everything it needs is passed in explicitly, so a test can build one from plain parts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from encoders.base import Encoder
from encoders.modality import Modality
from streams.core.errors import IndexStoreError
from streams.core.inference import InferenceThread
from streams.core.metrics import Metrics
from streams.core.retry import Backoff, retry_until_done
from streams.index.store import IndexStore
from streams.ingest.batch import embed_records, parse_records
from streams.ingest.deadletter import DeadLetterSink
from streams.ingest.records import BatchObserver, ConsumedRecord, EmbeddedBatch, IndexedItem

log = logging.getLogger(__name__)


@dataclass
class BatchPipeline:
    """The ingest stage of one worker: encoders, indexes, dead letters and observers.

    `encoders` and `index_stores` are filled by the worker at start-up (they are shared
    mappings); `ready` is set once they are, and batches wait for it.
    """

    encoders: Mapping[Modality, Encoder]
    index_stores: Mapping[Modality, IndexStore]
    deadletters: DeadLetterSink
    inference: InferenceThread
    metrics: Metrics
    key_prefix: str
    thumb_max_width: int
    observers: list[BatchObserver] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(
        self, modality: Modality, records: Sequence[ConsumedRecord]
    ) -> EmbeddedBatch | None:
        """Everything one batch needs before its offsets may be committed."""
        m, label = self.metrics, modality.value
        m.records_consumed.labels(modality=label).inc(len(records))
        m.batch_size.labels(modality=label).observe(len(records))
        await self.ready.wait()
        good, dead = parse_records(modality, records, key_prefix=self.key_prefix)
        batch: EmbeddedBatch | None = None
        if good:
            batch = await self.inference.run(
                embed_records, self.encoders[modality], modality, good,
                thumb_max_width=self.thumb_max_width,
            )
            dead.extend(batch.dead)
            m.stage_seconds.labels(modality=label, stage="decode").observe(batch.decode_s)
            m.stage_seconds.labels(modality=label, stage="encode").observe(batch.encode_s)
        if dead:
            await self.deadletters.send(modality, dead)
        if batch is None or not batch.items:
            return batch
        await self._index(modality, batch)
        if self.observers:  # they time their own stages (match, alert)
            await self._notify_observers(modality, batch.items, batch.vectors)
        return batch

    async def _index(self, modality: Modality, batch: EmbeddedBatch) -> None:
        """Upsert until Redis takes it (outage or refusal such as OOM: wait, never drop)."""
        m, label = self.metrics, modality.value
        store = self.index_stores[modality]
        t0 = time.perf_counter()
        await retry_until_done(
            lambda: store.upsert(batch.docs),
            op="upsert",
            what=f"indexing {len(batch.docs)} {label} items in {store.name}",
            metrics=m,
            transient=(IndexStoreError,),
        )
        m.stage_seconds.labels(modality=label, stage="index").observe(time.perf_counter() - t0)
        m.items_indexed.labels(modality=label).inc(len(batch.items))
        now_ms = time.time() * 1000
        ingest_to_indexed = m.ingest_to_indexed_seconds.labels(modality=label)
        for item in batch.items:
            lag_s = (now_ms - item.record.ts_ms) / 1000
            if math.isfinite(lag_s) and lag_s >= 0:
                ingest_to_indexed.observe(lag_s)

    async def _notify_observers(
        self, modality: Modality, items: list[IndexedItem], vectors: torch.Tensor
    ) -> None:
        """Run every observer; a failing one is logged and retried (offsets wait for it)."""
        for observer in list(self.observers):
            name = type(observer).__name__
            await retry_until_done(
                lambda o=observer: o.on_batch(modality, items, vectors),
                op="observer",
                what=(f"observer {name} on a {modality.value} batch of {len(items)} items "
                      f"(first {items[0].key if items else '-'})"),
                backoff=Backoff(initial_s=0.5, max_s=30.0),
                transient=(Exception,),
                on_failure=lambda _exc, n=name: self.metrics.observer_failures.labels(
                    observer=n).inc(),
                level=logging.ERROR,
            )
