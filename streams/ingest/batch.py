"""The pure steps of one micro-batch: parse, decode, embed, pair vectors with records.

`parse_records`, `decode_records`, `encode_decoded`, `make_items` and `embed_records` take
plain values, so unit tests call them without Kafka or Redis; `streams.ingest.pipeline`
strings them together with the dead-letter sink, the index and the observers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import torch

from encoders.base import Encoder
from encoders.errors import EncoderError, EncoderInputError
from encoders.modality import Modality
from streams.core.errors import WireFormatError
from streams.core.inference import is_device_error, is_out_of_memory
from streams.core.wire import WireRecord, parse_record
from streams.index.store import ItemDoc
from streams.ingest.records import (
    STAGE_DECODE,
    STAGE_ENCODE,
    STAGE_WIRE,
    ConsumedRecord,
    DeadLetter,
    EmbeddedBatch,
    IndexedItem,
    evidence_of,
)

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 8192
#: How the `lookout-error` of a record too large for the device even alone begins.
OUT_OF_MEMORY = "out of memory"


class EncoderUnavailable(EncoderError):
    """The encoder cannot embed now, for a reason that is not the batch's input: the
    pipeline keeps the batch (pauses, retries, reports) and dead-letters none of it."""


class DeviceError(EncoderUnavailable):
    """The device failed (a CUDA error, an accelerator fault); it may not recover."""


class EncoderBatchFailed(EncoderUnavailable):
    """Every record of a batch crashed the encoder with an error that is not about input."""


@dataclass
class Encoded:
    """`encode_decoded`'s answer: vectors of the `kept` indexes, reasons of the `failed`."""

    vectors: torch.Tensor | None
    kept: list[int]
    failed: dict[int, str]
    oom_errors: int = 0  # encoder calls that ran out of memory (each split or failed)


def parse_records(
    modality: Modality,
    records: Sequence[ConsumedRecord],
    *,
    key_prefix: str,
    space: str = "",
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
                    space=space,
                )
            )
        except WireFormatError as e:
            dead.append(DeadLetter(rec, str(e), STAGE_WIRE))
    return good, dead


def as_consumed(rec: WireRecord) -> ConsumedRecord:
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
    """Decode the batch with the encoder's batch decoder (one nvJPEG call for JPEG frames on
    CUDA, one payload after another elsewhere); an unusable payload becomes a dead letter
    with the decoder's reason. Should the batch decoder itself crash, every payload is
    decoded alone, so the crash is pinned on the records that cause it."""
    payloads = [r.payload for r in records]
    types = [r.content_type for r in records]
    try:
        slots = encoder.decode_many(payloads, types)
    except Exception:  # a decoder bug must not take the batch down with it
        slots = [_decode_one(encoder, rec) for rec in records]
    decoded: list[tuple[WireRecord, Any]] = []
    dead: list[DeadLetter] = []
    for rec, slot in zip(records, slots, strict=True):
        settled = _settle(encoder, rec, slot)
        (dead if isinstance(settled, DeadLetter) else decoded).append(settled)
    return decoded, dead


def parse_and_decode(
    encoder: Encoder, modality: Modality, record: ConsumedRecord, *, key_prefix: str,
    space: str = "",
) -> tuple[WireRecord, Any] | DeadLetter:
    """One record through `parse_records` and `decode_records`: what the media threads do
    for each record as it arrives (`streams.ingest.pipeline.BatchPipeline.start_decoding`)."""
    good, dead = parse_records(modality, [record], key_prefix=key_prefix, space=space)
    if dead:
        return dead[0]
    return _settle(encoder, good[0], _decode_one(encoder, good[0]))


def _decode_one(encoder: Encoder, rec: WireRecord) -> Any:
    """One payload decoded, or the exception decoding it raised."""
    try:
        return encoder.decode(rec.payload, rec.content_type)
    except Exception as e:
        return e


def _settle(encoder: Encoder, rec: WireRecord, slot: Any) -> tuple[WireRecord, Any] | DeadLetter:
    """A decoder's answer for one record: the decoded item, or its dead letter."""
    if isinstance(slot, EncoderInputError):
        return DeadLetter(as_consumed(rec), str(slot), STAGE_DECODE)
    if isinstance(slot, Exception):
        log.error("decoder of %s crashed on %s[%d]@%d", encoder.model_id, rec.topic,
                  rec.partition, rec.offset, exc_info=slot)
        return DeadLetter(as_consumed(rec), f"decoder crashed: {slot!r}", STAGE_DECODE)
    return rec, slot


def encode_decoded(encoder: Encoder, decoded: Sequence[Any]) -> Encoded:
    """Embed all items; when the batch fails, bisect to find and drop only the failing ones.

    Out of memory splits the batch in halves down to single items (one that still does
    not fit fails with `OUT_OF_MEMORY`). A device error raises `DeviceError` at once, and
    a batch whose every record crashed the encoder raises `EncoderBatchFailed`: neither
    says anything against the records, so nothing is dropped. Rows that are not finite
    count as failures of their records.
    """
    failed: dict[int, str] = {}
    crashes: list[Exception] = []  # failures of single records that are not the input's
    oom_errors = 0

    def run(indexes: list[int]) -> list[tuple[int, torch.Tensor]]:
        nonlocal oom_errors
        try:
            out = encoder.encode([decoded[i] for i in indexes])
        except Exception as e:
            if is_device_error(e):
                raise DeviceError(f"encoder {encoder.model_id} hit a device error: {e}") from e
            if is_out_of_memory(e):
                oom_errors += 1
                _release_cached_memory()
            if len(indexes) == 1:
                failed[indexes[0]] = _failure_reason(encoder, e)
                if not (isinstance(e, EncoderInputError) or is_out_of_memory(e)):
                    crashes.append(e)
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
    if not rows and crashes and len(crashes) == len(failed):
        first = crashes[0]
        raise EncoderBatchFailed(
            f"encoder {encoder.model_id} failed on every record of a batch of "
            f"{len(decoded)}: {type(first).__name__}: {first}") from first
    if not rows:
        return Encoded(None, [], failed, oom_errors)
    return Encoded(torch.stack([r for _, r in rows]), [i for i, _ in rows], failed, oom_errors)


def _failure_reason(encoder: Encoder, exc: Exception) -> str:
    if is_out_of_memory(exc):
        return (f"{OUT_OF_MEMORY}: encoder {encoder.model_id} could not embed this record "
                f"even on its own ({type(exc).__name__}: {exc})")
    return f"encoder {encoder.model_id} failed on this record: {exc}"


def _release_cached_memory() -> None:
    """Hand cached CUDA blocks back before the halves run (they may fit only then)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _item_text(modality: Modality, decoded: Any) -> str | None:
    if modality is Modality.LOGS and isinstance(decoded, str):
        return decoded[:MAX_TEXT_CHARS]
    return None


def audio_clip(wave: Any, rate: int | None, clip_rate: int, clip_format: str = "opus"
               ) -> tuple[bytes, str] | None:
    """A decoded chunk as a small clip people can listen to: mono at `clip_rate` (never
    above the decoded rate; an Opus rate), compressed as `clip_format` (opus, vorbis, or
    pcm: raw `audio/L16`, served as WAV). None without decoded samples (the `null`
    encoder) or with `clip_rate` 0."""
    from encoders.audio import clip_sample_rate, encode_clip, resample

    if not clip_rate or not rate or not isinstance(wave, torch.Tensor) or wave.ndim != 1:
        return None
    target = clip_sample_rate(clip_format, clip_rate, rate)
    samples = resample(wave.detach().to("cpu", torch.float32), rate, target)
    return encode_clip(samples.numpy(), target, clip_format)


def make_items(
    modality: Modality,
    decoded: Sequence[tuple[WireRecord, Any]],
    vectors: torch.Tensor,
    *,
    model: str,
    thumb_max_width: int,
    sample_rate: int | None = None,
    clip_rate: int = 0,
    clip_format: str = "opus",
    clips: Sequence[tuple[bytes, str] | None] | None = None,
    thumbs: Sequence[bytes | None] | None = None,
) -> tuple[list[IndexedItem], list[ItemDoc]]:
    """Pair each kept record with its vector row: the Redis document and the observer view;
    audio items keep a `clip_format` clip at `clip_rate` Hz (0: none), or the one of
    `clips` (one per record, made by `start_clips`) when given; frames keep a thumbnail at
    most `thumb_max_width` wide, or the one of `thumbs` (`start_thumbnails`)."""
    from encoders.image import make_thumbnail

    host = vectors.detach().to("cpu", torch.float32).numpy()
    items: list[IndexedItem] = []
    docs: list[ItemDoc] = []
    for row, (rec, value) in enumerate(decoded):
        key = rec.item_key
        text = _item_text(modality, value)
        thumb = None
        if clips is not None:
            clip = clips[row]
        else:
            clip = (audio_clip(value, sample_rate, clip_rate, clip_format)
                    if modality is Modality.AUDIO else None)
        evidence: dict[str, Any] = {"source": rec.source, "ts": rec.ts_ms, "model": model,
                                    **evidence_of(modality, key, text, clip is not None)}
        if modality is Modality.VIDEO and not isinstance(value, bytes):
            # (the `null` encoder decodes nothing: raw bytes, no picture)
            thumb = thumbs[row] if thumbs is not None else make_thumbnail(value, thumb_max_width)
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
                clip=clip[0] if clip else None,
                clip_type=clip[1] if clip else None,
            )
        )
    return items, docs


def start_clips(decoded: Sequence[tuple[WireRecord, Any]], sample_rate: int | None,
                clip_rate: int, clip_format: str, media: Executor) -> list[Future]:
    """Make the audio clips of a batch in `media` while the encoder runs.

    An Opus clip took 9-14 ms a 1-s chunk in libsndfile on this project's 2-core CPU box
    (2.5-4 ms now, through PyAV), a fifth of what the aisfx encoder spends on it; in the
    inference thread that was a fifth of the pipeline's audio rate (pipeline/bare 0.83)."""
    return [media.submit(audio_clip, value, sample_rate, clip_rate, clip_format)
            for _, value in decoded]


def start_thumbnails(decoded: Sequence[tuple[WireRecord, Any]], max_width: int,
                     media: Executor) -> list[Future]:
    """Make the frames' thumbnails in `media` while the encoder runs.

    Resizing and JPEG-encoding a 640x480 frame takes ~0.5 ms (OpenCV, which releases the
    GIL); one after another in an inference lane that is a CPU encoder's 1% and a GPU
    encoder's ceiling (~2,000 frames/s). A frame decoded on the GPU is shrunk there first
    (`encoders.image.thumbnail_source`), so only thumbnail-sized pixels cross to the host."""
    from encoders.image import make_thumbnail, thumbnail_source

    nothing: Future = Future()  # the `null` encoder decodes nothing: raw bytes, no picture
    nothing.set_result(None)
    return [nothing if isinstance(value, bytes) else
            media.submit(make_thumbnail, thumbnail_source(value, max_width), max_width)
            for _, value in decoded]


def embed_records(
    encoder: Encoder,
    modality: Modality,
    records: Sequence[WireRecord],
    *,
    thumb_max_width: int,
    clip_rate: int = 0,
    clip_format: str = "opus",
    media: Executor | None = None,
) -> EmbeddedBatch:
    """Decode, embed and build documents: all the CPU/GPU work of a batch, for one thread
    (audio clips and thumbnails in `media`, when given, while the encoder runs)."""
    t0 = time.perf_counter()
    decoded, dead = decode_records(encoder, records)
    return embed_decoded(encoder, modality, decoded, dead, time.perf_counter() - t0,
                         thumb_max_width=thumb_max_width, clip_rate=clip_rate,
                         clip_format=clip_format, media=media)


def embed_decoded(
    encoder: Encoder,
    modality: Modality,
    decoded: Sequence[tuple[WireRecord, Any]],
    dead: list[DeadLetter],
    decode_s: float,
    *,
    thumb_max_width: int,
    clip_rate: int = 0,
    clip_format: str = "opus",
    media: Executor | None = None,
) -> EmbeddedBatch:
    """Embed decoded records and build their documents. The answer's dead letters are
    `dead` (the batch's so far; not changed, so a retry starts from them again) and those
    the encoder refuses. `decode_s` is what decoding took."""
    dead = [*dead]
    t1 = time.perf_counter()
    sample_rate = getattr(encoder, "sample_rate", None)
    pending = (start_clips(decoded, sample_rate, clip_rate, clip_format, media)
               if media is not None and modality is Modality.AUDIO and clip_rate else None)
    pending_thumbs = (start_thumbnails(decoded, thumb_max_width, media)
                      if media is not None and modality is Modality.VIDEO else None)
    with torch.inference_mode():
        out = encode_decoded(encoder, [d for _, d in decoded])
    for i, reason in sorted(out.failed.items()):
        dead.append(DeadLetter(as_consumed(decoded[i][0]), reason, STAGE_ENCODE))
    if out.vectors is None:
        empty = torch.empty((0, encoder.dim), dtype=torch.float32, device=encoder.device)
        return EmbeddedBatch([], [], empty, dead, decode_s, time.perf_counter() - t1,
                             out.oom_errors)
    kept_decoded = [decoded[i] for i in out.kept]
    clips = [pending[i].result() for i in out.kept] if pending is not None else None
    thumbs = ([pending_thumbs[i].result() for i in out.kept] if pending_thumbs is not None
              else None)
    items, docs = make_items(modality, kept_decoded, out.vectors, model=encoder.short_id,
                             thumb_max_width=thumb_max_width, sample_rate=sample_rate,
                             clip_rate=clip_rate, clip_format=clip_format, clips=clips,
                             thumbs=thumbs)
    return EmbeddedBatch(items, docs, out.vectors, dead, decode_s, time.perf_counter() - t1,
                         out.oom_errors)
