"""What happens to one micro-batch: parse, decode, embed, index, notify observers.

The pure steps (`parse_records`, `decode_records`, `encode_decoded`, `make_items`,
`embed_records`) take plain values so unit tests call them without Kafka or Redis.
`handle_batch` strings them together for an agent: CPU/GPU work in the worker's single
inference thread, dead letters to Kafka, items to Redis, then every `BatchObserver`; only
when it returns may the batch's offsets be committed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from encoders.base import Encoder
from encoders.errors import EncoderInputError
from streams.errors import IndexStoreError, WireFormatError
from streams.index_store import ItemDoc
from streams.redis_retry import Backoff, retry_until_done
from streams.settings import Modality
from streams.wire import WireRecord, parse_record

if TYPE_CHECKING:
    from streams.app import WorkerContext

log = logging.getLogger(__name__)

#: Dead-letter reasons as metric labels (a fixed vocabulary; the full text goes in a header).
STAGE_WIRE = "wire_format"
STAGE_DECODE = "decode"
STAGE_ENCODE = "encode"
MAX_TEXT_CHARS = 8192


@dataclass(frozen=True)
class ConsumedRecord:
    """A Kafka record as consumed, before any validation."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class DeadLetter:
    """A record that cannot be indexed, why (for a person) and at which stage (for metrics)."""

    record: ConsumedRecord
    reason: str
    stage: str


@dataclass
class IndexedItem:
    """An item that is in Redis; `row` indexes the batch's vector tensor."""

    key: str
    record: WireRecord
    row: int
    text: str | None
    evidence: dict[str, Any]


@dataclass
class EmbeddedBatch:
    """The output of the inference thread for one batch."""

    items: list[IndexedItem]
    docs: list[ItemDoc]
    vectors: torch.Tensor
    dead: list[DeadLetter]
    decode_s: float = 0.0
    encode_s: float = 0.0


class BatchObserver(Protocol):
    """Sees every batch after it is in Redis and before its offsets may be committed."""

    async def on_batch(
        self, modality: Modality, items: list[IndexedItem], vectors: torch.Tensor
    ) -> None: ...


def parse_records(
    modality: Modality,
    records: Sequence[ConsumedRecord],
    *,
    key_prefix: str,
) -> tuple[list[WireRecord], list[DeadLetter]]:
    """Validate the wire format of each record; the bad ones become dead letters."""
    good: list[WireRecord] = []
    dead: list[DeadLetter] = []
    for rec in records:
        try:
            good.append(
                parse_record(
                    modality,
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    key=rec.key,
                    value=rec.value,
                    headers=rec.headers,
                    timestamp_ms=rec.timestamp_ms,
                    key_prefix=key_prefix,
                )
            )
        except WireFormatError as e:
            dead.append(DeadLetter(rec, str(e), STAGE_WIRE))
    return good, dead


def _consumed(rec: WireRecord) -> ConsumedRecord:
    """The original record again (for a dead letter of a record that parsed)."""
    return ConsumedRecord(
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        key=rec.source.encode("utf-8"),
        value=rec.payload,
        headers=list(rec.headers.items()),
        timestamp_ms=rec.ts_ms,
    )


def decode_records(
    encoder: Encoder, records: Sequence[WireRecord]
) -> tuple[list[tuple[WireRecord, Any]], list[DeadLetter]]:
    """Decode each payload; an unusable one becomes a dead letter with the decoder's reason."""
    decoded: list[tuple[WireRecord, Any]] = []
    dead: list[DeadLetter] = []
    for rec in records:
        try:
            decoded.append((rec, encoder.decode(rec.payload, rec.content_type)))
        except EncoderInputError as e:
            dead.append(DeadLetter(_consumed(rec), str(e), STAGE_DECODE))
        except Exception as e:  # a decoder bug must not take the batch down with it
            log.exception("decoder of %s crashed on %s[%d]@%d", encoder.model_id,
                          rec.topic, rec.partition, rec.offset)
            dead.append(DeadLetter(_consumed(rec), f"decoder crashed: {e!r}", STAGE_DECODE))
    return decoded, dead


def encode_decoded(
    encoder: Encoder, decoded: Sequence[Any]
) -> tuple[torch.Tensor | None, list[int], dict[int, str]]:
    """Embed all items; when the batch fails, bisect to find and drop only the failing ones.

    Returns (vectors for the kept items or None, kept indexes, {failed index: reason}).
    Rows that are not finite count as failures too.
    """
    failed: dict[int, str] = {}

    def run(indexes: list[int]) -> list[tuple[int, torch.Tensor]]:
        try:
            out = encoder.encode([decoded[i] for i in indexes])
        except Exception as e:
            if len(indexes) == 1:
                failed[indexes[0]] = f"encoder {encoder.model_id} failed on this record: {e}"
                return []
            mid = len(indexes) // 2
            return run(indexes[:mid]) + run(indexes[mid:])
        finite = torch.isfinite(out).all(dim=1).tolist()
        rows = []
        for pos, i in enumerate(indexes):
            if finite[pos]:
                rows.append((i, out[pos]))
            else:
                failed[i] = f"encoder {encoder.model_id} produced a non-finite vector"
        return rows

    rows = run(list(range(len(decoded)))) if decoded else []
    if not rows:
        return None, [], failed
    return torch.stack([r for _, r in rows]), [i for i, _ in rows], failed


def _item_text(modality: Modality, decoded: Any) -> str | None:
    if modality is Modality.LOGS and isinstance(decoded, str):
        return decoded[:MAX_TEXT_CHARS]
    return None


def make_items(
    modality: Modality,
    decoded: Sequence[tuple[WireRecord, Any]],
    vectors: torch.Tensor,
    *,
    model: str,
    thumb_max_width: int,
    sample_rate: int | None = None,
) -> tuple[list[IndexedItem], list[ItemDoc]]:
    """Pair each kept record with its vector row: the Redis document and the observer view."""
    from encoders.image import make_thumbnail

    host = vectors.detach().to("cpu", torch.float32).numpy()
    items: list[IndexedItem] = []
    docs: list[ItemDoc] = []
    for row, (rec, value) in enumerate(decoded):
        key = rec.item_key
        text = _item_text(modality, value)
        thumb = None
        evidence: dict[str, Any] = {"source": rec.source, "ts": rec.ts_ms, "model": model}
        if modality is Modality.VIDEO:
            thumb = make_thumbnail(value, thumb_max_width)
            evidence["thumb_url"] = f"/items/{key}/thumb"
        elif modality is Modality.LOGS:
            evidence["text"] = text
        elif modality is Modality.AUDIO:
            evidence["offset_ms"] = 0
            shape = getattr(value, "shape", None)
            if sample_rate and shape:
                evidence["duration_ms"] = int(1000 * int(shape[-1]) / sample_rate)
        items.append(IndexedItem(key, rec, row, text, evidence))
        docs.append(
            ItemDoc(
                key=key,
                source=rec.source,
                ts_ms=rec.ts_ms,
                vector=host[row],
                topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
                content_type=rec.content_type,
                text=text,
                thumb=thumb,
            )
        )
    return items, docs


def embed_records(
    encoder: Encoder,
    modality: Modality,
    records: Sequence[WireRecord],
    *,
    thumb_max_width: int,
) -> EmbeddedBatch:
    """Decode, embed and build documents: all the CPU/GPU work of a batch, for one thread."""
    t0 = time.perf_counter()
    decoded, dead = decode_records(encoder, records)
    t1 = time.perf_counter()
    with torch.inference_mode():
        vectors, kept, failed = encode_decoded(encoder, [d for _, d in decoded])
    for i, reason in failed.items():
        dead.append(DeadLetter(_consumed(decoded[i][0]), reason, STAGE_ENCODE))
    if vectors is None:
        empty = torch.empty((0, encoder.dim), dtype=torch.float32, device=encoder.device)
        return EmbeddedBatch([], [], empty, dead, t1 - t0, time.perf_counter() - t1)
    kept_decoded = [decoded[i] for i in kept]
    items, docs = make_items(modality, kept_decoded, vectors, model=encoder.short_id,
                             thumb_max_width=thumb_max_width,
                             sample_rate=getattr(encoder, "sample_rate", None))
    return EmbeddedBatch(items, docs, vectors, dead, t1 - t0, time.perf_counter() - t1)


async def _notify_observers(
    ctx: WorkerContext, modality: Modality, items: list[IndexedItem], vectors: torch.Tensor
) -> None:
    """Run every observer; a failing one is logged and retried (offsets wait for it)."""
    for observer in list(ctx.observers):
        name = type(observer).__name__
        await retry_until_done(
            lambda o=observer: o.on_batch(modality, items, vectors),
            op="observer",
            what=(f"observer {name} on a {modality.value} batch of {len(items)} items "
                  f"(first {items[0].key if items else '-'})"),
            backoff=Backoff(initial_s=0.5, max_s=30.0),
            transient=(Exception,),
            on_failure=lambda _exc, n=name: ctx.metrics.observer_failures.labels(
                observer=n).inc(),
            level=logging.ERROR,
        )


async def handle_batch(
    ctx: WorkerContext, modality: Modality, records: Sequence[ConsumedRecord]
) -> EmbeddedBatch | None:
    """Everything one batch needs before its offsets may be committed."""
    m = ctx.metrics
    label = modality.value
    m.records_consumed.labels(modality=label).inc(len(records))
    m.batch_size.labels(modality=label).observe(len(records))
    await ctx.wait_started()
    good, dead = parse_records(modality, records, key_prefix=ctx.settings.topic_prefix)
    batch: EmbeddedBatch | None = None
    if good:
        encoder = ctx.encoders[modality]
        batch = await ctx.run_encoder(
            embed_records, encoder, modality, good, thumb_max_width=ctx.settings.thumb_max_width
        )
        dead.extend(batch.dead)
        m.stage_seconds.labels(modality=label, stage="decode").observe(batch.decode_s)
        m.stage_seconds.labels(modality=label, stage="encode").observe(batch.encode_s)
    if dead:
        await ctx.deadletters.send(modality, dead)
    if batch is None or not batch.items:
        return batch
    store = ctx.index_stores[modality]
    t0 = time.perf_counter()
    await retry_until_done(
        lambda: store.upsert(batch.docs),
        op="upsert",
        what=f"indexing {len(batch.docs)} {label} items in {store.name}",
        metrics=m,
        transient=(IndexStoreError,),  # outage or refusal (e.g. OOM): wait, never drop
    )
    m.stage_seconds.labels(modality=label, stage="index").observe(time.perf_counter() - t0)
    m.items_indexed.labels(modality=label).inc(len(batch.items))
    now_ms = time.time() * 1000
    ingest_to_indexed = m.ingest_to_indexed_seconds.labels(modality=label)
    for item in batch.items:
        lag_s = (now_ms - item.record.ts_ms) / 1000
        if math.isfinite(lag_s) and lag_s >= 0:
            ingest_to_indexed.observe(lag_s)
    if ctx.observers:  # they time their own stages (match, alert)
        await _notify_observers(ctx, modality, batch.items, batch.vectors)
    return batch
