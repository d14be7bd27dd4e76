"""What happens to one micro-batch before its offsets may be committed.

`BatchPipeline.prepare` runs the pure steps of `streams.ingest.batch` in one of the worker's
inference lanes; `complete` sends dead letters to Kafka, upserts the items into Redis, then
hands them to every `BatchObserver` (alerting). Only when `complete` returns may the agent
ack the batch. The split lets the agent prepare batch N+1 while batch N completes
(`streams.ingest.flow`); `handle` is both, one after the other. Frames and audio chunks are
parsed and decoded earlier still, in the media threads as each record arrives
(`start_decoding`), so decoding batch N+1 overlaps embedding batch N.
Everything it needs is passed in explicitly, so a test can build one from plain parts.

Failures, by whose fault they are (every record ends indexed or dead-lettered, or the
batch is not acked):

- the input's (wire format, decode, a record that crashes the encoder while the rest of
  its batch embeds): that record is dead-lettered with the reason;
- an outage (Redis, Kafka): waited out with backoff, however long;
- the device's (a CUDA error, or the encoder failing whole batches): the batch waits and
  is retried; `problems` (the worker's readiness) says so, so `/readyz` answers 503;
  out of memory splits the batch instead (`encode_decoded`);
- a bug anywhere else: `attempts` tries with backoff, then the records it belongs to are
  dead-lettered with the exception as the reason, so the partition moves on; a bug in an
  observer after indexing leaves the items indexed and is counted and logged instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from encoders.base import Encoder
from encoders.modality import Modality
from streams.core.errors import IndexStoreError
from streams.core.inference import InferencePool
from streams.core.metrics import Metrics
from streams.core.retry import OUTAGES, Backoff, retry_until_done
from streams.core.wire import WireRecord
from streams.index.store import IndexStore
from streams.ingest.batch import (
    DeviceError,
    EncoderUnavailable,
    as_consumed,
    embed_decoded,
    embed_records,
    parse_and_decode,
    parse_records,
)
from streams.ingest.deadletter import DeadLetterSink
from streams.ingest.records import (
    STAGE_ERROR,
    BatchObserver,
    ConsumedRecord,
    DeadLetter,
    EmbeddedBatch,
    IndexedItem,
    error_reason,
)

T = TypeVar("T")
#: What the media threads make of one arriving record (`batch.parse_and_decode`).
Decoding = Future[tuple[WireRecord, Any] | DeadLetter]

log = logging.getLogger(__name__)


@dataclass
class PreparedBatch:
    """`BatchPipeline.prepare`'s answer: the embedded items (None: nothing embedded) and
    the records to dead-letter, all still to be written by `complete`."""

    modality: Modality
    batch: EmbeddedBatch | None
    dead: list[DeadLetter]


def encode_threads(n: int, max_batch: int, small_threads: int, on_gpu: bool) -> int | None:
    """Torch threads for embedding a batch of `n` records: `small_threads` while batches
    stay at most half of `max_batch` (the encoder keeps up, and how soon this batch's
    alerts go out matters more than throughput), all of its inference lane's (None) once
    they fill (the encoder is behind: throughput), and on a GPU (the CPU only feeds it).
    With two lanes of one thread each (the 2-core default) both answers are one thread.

    Why (docs/deploy.md, "Torch threads"): on the 2-core box, two threads gave 1.1-1.7x the
    pipeline's items/s of one, but at 50 log lines/s one thread held ingest->alert p99 at
    28-67 ms where two gave 36-124 ms, as two OpenMP threads wait on each other whenever
    the event loop, Kafka or Redis takes a core. The adaptive batcher makes batches small
    exactly when the encoder keeps up, so the batch size says which regime this is."""
    if on_gpu or small_threads <= 0 or 2 * n > max_batch:
        return None
    return small_threads


@dataclass
class BatchPipeline:
    """The ingest stage of one worker: encoders, indexes, dead letters and observers.

    `encoders` and `index_stores` are filled by the worker at start-up (they are shared
    mappings); `ready` is set once they are, and batches wait for it. `problems` is the
    worker's readiness list: a failing device adds its line there while it lasts.
    """

    encoders: Mapping[Modality, Encoder]
    index_stores: Mapping[Modality, IndexStore]
    deadletters: DeadLetterSink
    inference: InferencePool
    metrics: Metrics
    key_prefix: str
    thumb_max_width: int
    #: Audio items keep a clip at this rate (Hz) for people to listen to; 0: none.
    audio_clip_rate: int = 0
    #: ... compressed as (opus, vorbis, pcm).
    audio_clip_format: str = "opus"
    #: Records are decoded here as they arrive (`start_decoding`), thumbnails and audio
    #: clips made while the encoder runs (`batch.start_thumbnails`, `batch.start_clips`).
    media: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(
        max_workers=2, thread_name_prefix="lookout-media"))
    observers: list[BatchObserver] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    problems: list[str] = field(default_factory=list)
    #: Tries of a step that fails with a bug before its records are given up on.
    attempts: int = 3
    backoff: Backoff = Backoff(initial_s=0.5, max_s=5.0)
    #: Waits between tries of a batch while the device fails (never given up on).
    device_backoff: Backoff = Backoff(initial_s=1.0, max_s=30.0)
    #: Whole batches failing in a row before the encoder counts as broken (unready).
    failures_before_unhealthy: int = 3
    #: CPU torch threads for a batch at most half as large as `batch_limit` allows (the
    #: encoder keeps up): `encode_threads`. 0: always the configured count.
    small_batch_threads: int = 0
    #: The most records a batch of a modality takes (`Settings.batch_size`), by whether
    #: its encoder is on a GPU.
    batch_limit: Callable[[Modality, bool], int] | None = None
    _device_failures: dict[Modality, int] = field(default_factory=dict, init=False)
    _device_problems: dict[Modality, str] = field(default_factory=dict, init=False)

    async def handle(
        self, modality: Modality, records: Sequence[ConsumedRecord]
    ) -> EmbeddedBatch | None:
        """Everything one batch needs before its offsets may be committed."""
        prepared = await self.prepare(modality, records)
        return await self.complete(prepared)

    def start_decoding(self, modality: Modality, record: ConsumedRecord) -> Decoding | None:
        """Parse and decode `record` in the media threads now, while earlier batches are
        embedded; its batch's `prepare` then only waits for what is not done yet. None
        where the batch decodes it instead: before the encoders are loaded, and for
        encoders whose decoding is not worth it (`Encoder.decode_ahead`: log lines, the
        `null` encoder, and frames on CUDA, which decode a batch in one nvJPEG call)."""
        if not self.ready.is_set() or not self.encoders[modality].decode_ahead:
            return None
        return self.media.submit(parse_and_decode, self.encoders[modality], modality, record,
                                 key_prefix=self.key_prefix,
                                 space=self.index_stores[modality].space)

    async def prepare(self, modality: Modality, records: Sequence[ConsumedRecord],
                      decoding: Sequence[Decoding | None] | None = None) -> PreparedBatch:
        """The encoder's part of a batch (parse, decode, encode); writes nothing, so the
        next batch may be prepared while this one's `complete` runs. `decoding`: what
        `start_decoding` answered for each record, when the agent asked it."""
        m, label = self.metrics, modality.value
        m.records_consumed.labels(modality=label).inc(len(records))
        m.batch_size.labels(modality=label).observe(len(records))
        await self.ready.wait()
        ahead = await self._decoded_ahead(decoding)
        if ahead is not None:
            decoded, dead, waited_s = ahead
            batch = (await self._embed(modality, [r for r, _ in decoded], dead, decoded,
                                       waited_s) if decoded else None)
            return PreparedBatch(modality, batch, dead)
        try:  # pure and deterministic: a retry would fail the same way
            good, dead = parse_records(modality, records, key_prefix=self.key_prefix,
                                       space=self.index_stores[modality].space)
        except Exception as exc:
            return PreparedBatch(modality, None, self._given_up(modality, records,
                                                                "parsing the batch", exc))
        batch = await self._embed(modality, good, dead) if good else None
        return PreparedBatch(modality, batch, dead)

    @staticmethod
    async def _decoded_ahead(decoding: Sequence[Decoding | None] | None
                             ) -> tuple[list[tuple[WireRecord, Any]], list[DeadLetter],
                                        float] | None:
        """The records decoded ahead, the dead letters among them, and how long the batch
        still waited for them; None if any record was not decoded ahead or its decoding
        failed (a bug: the batch then parses and decodes inline, where failures are
        settled)."""
        if not decoding or any(d is None for d in decoding):
            return None
        start = time.perf_counter()
        try:
            results = [await asyncio.wrap_future(d) for d in decoding if d is not None]
        except Exception:
            log.exception("decoding ahead failed; the batch decodes again inline")
            return None
        decoded = [r for r in results if not isinstance(r, DeadLetter)]
        dead = [r for r in results if isinstance(r, DeadLetter)]
        return decoded, dead, time.perf_counter() - start

    async def complete(self, prepared: PreparedBatch) -> EmbeddedBatch | None:
        """The writing part: dead letters, upsert, observers (match, alert). When it
        returns, the batch's offsets may be committed."""
        modality, batch = prepared.modality, prepared.batch
        if prepared.dead:
            await self.deadletters.send(modality, prepared.dead)
        if batch is None or not batch.items:
            return batch
        try:
            await self._index(modality, batch)
        except Exception as exc:  # a bug that outlasted its retries; outages never get here
            await self._give_up(modality, [as_consumed(it.record) for it in batch.items],
                                "indexing", exc)
            return None
        if self.observers:  # they time their own stages (match, alert)
            await self._notify_observers(modality, batch.items, batch.vectors)
        return batch

    async def _embed(self, modality: Modality, good: list[WireRecord], dead: list[DeadLetter],
                     decoded: list[tuple[WireRecord, Any]] | None = None,
                     decoded_s: float = 0.0) -> EmbeddedBatch | None:
        """Decode `good` (unless `decoded` holds them decoded ahead, after the batch waited
        `decoded_s` for them) and embed in an inference lane; a failing device is waited
        out (and reported), a bug retried `attempts` times, then its records join `dead`."""
        m, label = self.metrics, modality.value
        encoder = self.encoders[modality]
        embed = (functools.partial(embed_records, encoder, modality, good) if decoded is None
                 else functools.partial(embed_decoded, encoder, modality, decoded, [],
                                        decoded_s))
        try:
            batch = await retry_until_done(
                lambda: self.inference.run_with_threads(
                    self._threads_for(modality, len(good)), embed,
                    thumb_max_width=self.thumb_max_width, clip_rate=self.audio_clip_rate,
                    clip_format=self.audio_clip_format, media=self.media),
                op="encode", what=f"embedding a {label} batch of {len(good)} records "
                                  f"(first {good[0].topic}[{good[0].partition}]@{good[0].offset})",
                backoff=self.device_backoff, transient=(EncoderUnavailable,),
                bounded=(Exception,), attempts=self.attempts,
                on_failure=lambda exc: self._device_failed(modality, exc), level=logging.ERROR,
            )
        except Exception as exc:
            self._log_given_up(modality, len(good), "embedding", exc)
            reason = error_reason("embedding", exc)
            dead.extend(DeadLetter(as_consumed(r), reason, STAGE_ERROR) for r in good)
            return None
        self._device_ok(modality)
        dead.extend(batch.dead)
        if batch.oom_errors:
            m.encoder_failures.labels(modality=label, kind="out_of_memory").inc(
                batch.oom_errors)
        m.stage_seconds.labels(modality=label, stage="decode").observe(batch.decode_s)
        m.stage_seconds.labels(modality=label, stage="encode").observe(batch.encode_s)
        return batch

    def _threads_for(self, modality: Modality, n: int) -> int | None:
        if self.batch_limit is None:
            return None
        on_gpu = self.encoders[modality].device.type == "cuda"
        return encode_threads(n, self.batch_limit(modality, on_gpu), self.small_batch_threads,
                              on_gpu)

    def _device_failed(self, modality: Modality, exc: BaseException) -> None:
        """Count a batch the device failed; past the threshold (at once for a device
        error) the worker reports itself unready until a batch embeds again."""
        if not isinstance(exc, EncoderUnavailable):
            return
        n = self._device_failures[modality] = self._device_failures.get(modality, 0) + 1
        kind = "device" if isinstance(exc, DeviceError) else "batch_failed"
        self.metrics.encoder_failures.labels(modality=modality.value, kind=kind).inc()
        if isinstance(exc, DeviceError) or n >= self.failures_before_unhealthy:
            problem = (f"the {modality.value} encoder is failing ({n} tries of a batch in a "
                       f"row), consumption is paused and nothing is dropped: {exc}")[:500]
            self._set_device_problem(modality, problem)

    def _device_ok(self, modality: Modality) -> None:
        self._device_failures.pop(modality, None)
        if modality in self._device_problems:
            log.warning("the %s encoder embeds again; consumption resumes", modality.value)
        self._set_device_problem(modality, None)

    def _set_device_problem(self, modality: Modality, problem: str | None) -> None:
        old = self._device_problems.pop(modality, None)
        if old in self.problems:
            self.problems.remove(old)
        if problem is not None:
            self._device_problems[modality] = problem
            self.problems.append(problem)

    async def _give_up(self, modality: Modality, records: Sequence[ConsumedRecord],
                       doing: str, exc: Exception) -> None:
        """Dead-letter the records a bug belongs to, with the exception as the reason."""
        await self.deadletters.send(modality, self._given_up(modality, records, doing, exc))

    def _given_up(self, modality: Modality, records: Sequence[ConsumedRecord], doing: str,
                  exc: Exception) -> list[DeadLetter]:
        """The dead letters of records a bug belongs to (logged once here)."""
        self._log_given_up(modality, len(records), doing, exc)
        reason = error_reason(doing, exc)
        return [DeadLetter(r, reason, STAGE_ERROR) for r in records]

    def _log_given_up(self, modality: Modality, n: int, doing: str, exc: Exception) -> None:
        log.error("gave up %s a %s batch after %d attempts; dead-lettering its %d records "
                  "with the error as the reason", doing, modality.value, self.attempts, n,
                  exc_info=exc)

    async def _bounded(self, fn: Callable[[], Awaitable[T]], *, op: str, what: str,
                       transient: tuple[type[BaseException], ...],
                       metrics: Metrics | None = None) -> T:
        """Wait out `transient` errors; retry anything else `attempts` times, then raise."""
        return await retry_until_done(
            fn, op=op, what=what, metrics=metrics,
            backoff=self.backoff, transient=transient, bounded=(Exception,),
            attempts=self.attempts, level=logging.ERROR,
        )

    async def _index(self, modality: Modality, batch: EmbeddedBatch) -> None:
        """Upsert until Redis takes it (outage or refusal such as OOM: wait, never drop)."""
        m, label = self.metrics, modality.value
        store = self.index_stores[modality]
        t0 = time.perf_counter()
        await self._bounded(
            lambda: store.upsert(batch.docs), op="upsert",
            what=f"indexing {len(batch.docs)} {label} items in {store.name}",
            transient=(IndexStoreError,), metrics=m,
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
        """Run every observer: outages are waited out (offsets wait for them); a bug is
        retried, then counted and logged, and the batch goes on (its items are indexed)."""
        for observer in list(self.observers):
            stage = getattr(observer, "stage", type(observer).__name__.lower())
            transient = OUTAGES + tuple(getattr(observer, "transient", ()))
            what = (f"observer {stage} on a {modality.value} batch of {len(items)} items "
                    f"(first {items[0].key if items else '-'})")
            try:
                await self._bounded(lambda o=observer: o.on_batch(modality, items, vectors),
                                    op="observer", what=what, transient=transient)
            except Exception as exc:
                self.metrics.observer_failures.labels(stage=stage).inc()
                log.error("gave up on %s after %d attempts; the items stay indexed, their "
                          "matches and alerts are skipped", what, self.attempts, exc_info=exc)
