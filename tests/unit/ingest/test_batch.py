"""The pipeline's pure steps, with the real `trivial` encoders and no Kafka or Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from encoders.errors import EncoderInputError
from encoders.modality import Modality
from encoders.registry import build_encoder
from streams.core.wire import encode_headers
from streams.ingest.batch import (
    OUT_OF_MEMORY,
    STAGE_DECODE,
    STAGE_ENCODE,
    STAGE_WIRE,
    ConsumedRecord,
    DeviceError,
    EncoderBatchFailed,
    decode_records,
    embed_records,
    encode_decoded,
    parse_and_decode,
    parse_records,
)
from tests.records import bad_records, good_records

PREFIX = "unit"
SPACE = "m-1:float32"


def consumed(rec, offset: int, topic: str | None = None) -> ConsumedRecord:
    return ConsumedRecord(
        topic=topic or f"{PREFIX}.{rec.modality.value}", partition=0, offset=offset,
        key=rec.source.encode(), value=rec.value, headers=list(rec.headers),
        timestamp_ms=rec.ts_ms,
    )


@pytest.fixture(scope="module")
def encoders():
    return {m: build_encoder("trivial", m.value, device="cpu") for m in Modality}


def test_parse_keeps_good_records_and_explains_bad_ones():
    good = [consumed(r, i) for i, r in enumerate(good_records(Modality.LOGS, 3))]
    no_key = ConsumedRecord("unit.logs", 0, 3, None, b"x", [("content-type", b"text/plain")])
    no_type = ConsumedRecord("unit.logs", 0, 4, b"app", b"x", [])
    wrong_type = ConsumedRecord("unit.logs", 0, 5, b"app", b"x", [("content-type", b"image/png")])
    ok, dead = parse_records(Modality.LOGS, [*good, no_key, no_type, wrong_type],
                             key_prefix=PREFIX, space=SPACE)
    assert [r.offset for r in ok] == [0, 1, 2]
    assert ok[0].item_key == "unit:item:logs:m-1:float32:unit.logs:0:0"
    assert [d.record.offset for d in dead] == [3, 4, 5]
    assert {d.stage for d in dead} == {STAGE_WIRE}
    assert "key" in dead[0].reason and "content-type" in dead[1].reason
    assert "not accepted" in dead[2].reason


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=8) | st.none(), st.binary(max_size=8) | st.none(),
                          st.sampled_from([b"text/plain", b"application/json", b"x", b""])),
                max_size=20))
def test_parse_accounts_for_every_record(rows):
    records = [
        ConsumedRecord("t.logs", 0, i, key, value, [("content-type", ct)], 1_700_000_001_000)
        for i, (key, value, ct) in enumerate(rows)
    ]
    ok, dead = parse_records(Modality.LOGS, records, key_prefix=PREFIX, space=SPACE)
    assert sorted([r.offset for r in ok] + [d.record.offset for d in dead]) == list(
        range(len(records)))
    assert all(d.reason for d in dead)


@pytest.mark.parametrize("modality", list(Modality))
def test_the_null_encoder_indexes_every_record_without_decoding(modality):
    """The pipeline bench's ceiling: items and docs but no thumbnail or text to make."""
    ok, _ = parse_records(
        modality, [consumed(r, i) for i, r in enumerate(good_records(modality, 3))],
        key_prefix=PREFIX, space=SPACE)
    batch = embed_records(build_encoder("null", modality.value, device="cpu"), modality, ok,
                          thumb_max_width=32)
    assert not batch.dead and len(batch.docs) == 3
    assert all(d.thumb is None and d.text is None for d in batch.docs)


@pytest.mark.parametrize("modality", list(Modality))
def test_embed_records_builds_one_item_and_doc_per_good_record(encoders, modality):
    enc = encoders[modality]
    ok, dead = parse_records(
        modality, [consumed(r, i) for i, r in enumerate(good_records(modality, 5))],
        key_prefix=PREFIX, space=SPACE)
    assert not dead
    batch = embed_records(enc, modality, ok, thumb_max_width=32)
    assert not batch.dead
    assert batch.vectors.shape == (5, enc.dim)
    assert torch.allclose(batch.vectors.norm(dim=1), torch.ones(5), atol=1e-4)
    assert [i.row for i in batch.items] == list(range(5))
    for item, doc in zip(batch.items, batch.docs, strict=True):
        assert item.key == doc.key == item.record.item_key
        assert doc.source == item.record.source and doc.ts_ms == item.record.ts_ms
        assert np.allclose(doc.vector, batch.vectors[item.row].numpy())
        assert item.evidence["source"] == doc.source
    first = batch.docs[0]
    if modality is Modality.VIDEO:
        assert first.thumb is not None and first.thumb[:2] == b"\xff\xd8"
        assert "thumb_url" in batch.items[0].evidence
    if modality is Modality.LOGS:
        assert first.text and batch.items[0].evidence["text"] == first.text
    if modality is Modality.AUDIO:
        assert batch.items[0].evidence["duration_ms"] == 250


def test_undecodable_records_become_dead_letters_and_the_rest_is_indexed(encoders):
    for modality in Modality:
        bad = [r for r in bad_records() if r.modality is modality]
        records = [consumed(r, i) for i, r in enumerate([*good_records(modality, 3), *bad])]
        ok, dead = parse_records(modality, records, key_prefix=PREFIX, space=SPACE)
        batch = embed_records(encoders[modality], modality, ok, thumb_max_width=32)
        dead += batch.dead
        assert len(batch.items) == 3
        assert len(batch.items) + len(dead) == len(records)
        for letter in dead:
            expected = next(r.bad_reason for r in bad if r.value == letter.record.value)
            assert expected in letter.reason.lower()
            assert letter.stage in (STAGE_WIRE, STAGE_DECODE)


class _PickyEncoder:
    """Fails any batch holding the word 'poison'; NaN rows for 'nan'."""

    model_id = "picky"

    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        if any(i == "poison" for i in items):
            raise RuntimeError("cannot embed poison")
        rows = [torch.full((4,), float("nan")) if i == "nan" else torch.ones(4) / 2
                for i in items]
        return torch.stack(rows)


def test_encoder_failures_are_isolated_to_the_records_that_cause_them():
    items = ["a", "poison", "b", "c", "nan", "d", "poison"]
    out = encode_decoded(_PickyEncoder(), items)
    assert out.kept == [0, 2, 3, 5]
    assert out.vectors is not None and out.vectors.shape == (4, 4)
    assert set(out.failed) == {1, 4, 6}
    assert "poison" in out.failed[1] and "non-finite" in out.failed[4]


def test_a_batch_the_encoder_fails_entirely_is_kept_not_dead_lettered():
    """Every record failing for a reason that is not the input's says more about the
    encoder than about the records: raise, so the pipeline keeps the batch."""
    with pytest.raises(EncoderBatchFailed, match="cannot embed poison"):
        encode_decoded(_PickyEncoder(), ["poison", "poison"])


class _RefusingEncoder:
    """Refuses every record as bad input."""

    model_id = "refusing"

    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        raise EncoderInputError("not a sound")


def test_a_batch_of_bad_inputs_is_dead_lettered_entirely():
    out = encode_decoded(_RefusingEncoder(), ["x", "y"])
    assert out.vectors is None and out.kept == [] and len(out.failed) == 2
    assert "not a sound" in out.failed[0]


class _SmallDevice:
    """Runs out of memory on any batch of more than `k` items; says what it embedded."""

    model_id = "small"

    def __init__(self, k: int, cuda: bool = True) -> None:
        self.k, self.cuda = k, cuda
        self.embedded: list[int] = []

    def encode(self, items: Sequence[int]) -> torch.Tensor:
        if len(items) > self.k:
            if self.cuda:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate")
        self.embedded.extend(items)
        return torch.tensor([[float(i), 1.0] for i in items])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 45), st.booleans())
def test_out_of_memory_splits_the_batch_until_it_fits(n, k, cuda):
    """Any batch, any capacity: each record is embedded exactly once, in order, or (when
    even alone it does not fit) dead-lettered as out of memory; none is lost."""
    encoder = _SmallDevice(k, cuda)
    out = encode_decoded(encoder, list(range(n)))
    assert sorted(encoder.embedded) == encoder.embedded == out.kept
    assert sorted(out.kept + list(out.failed)) == list(range(n))
    assert all(reason.startswith(OUT_OF_MEMORY) for reason in out.failed.values())
    if k >= 1:
        assert out.kept == list(range(n)) and not out.failed
        assert (out.vectors is None) == (n == 0)
        if out.vectors is not None:
            assert out.vectors[:, 0].tolist() == [float(i) for i in range(n)]
    else:
        assert out.vectors is None and len(out.failed) == n
    assert (out.oom_errors > 0) == (n > k)


class _BrokenDevice:
    model_id = "broken"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        raise self.error


@pytest.mark.parametrize("error", [
    torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
    RuntimeError("CUDA error: device-side assert triggered"),
], ids=repr)
def test_a_device_error_is_raised_at_once_and_nothing_is_dead_lettered(error):
    with pytest.raises(DeviceError, match="CUDA error"):
        encode_decoded(_BrokenDevice(error), ["a", "b", "c"])


def test_embed_records_reports_encode_failures_as_dead_letters(encoders):
    enc = encoders[Modality.LOGS]

    class Broken(type(enc)):
        def _embed(self, items):
            if any("explode" in i for i in items):
                raise RuntimeError("boom")
            return super()._embed(items)

    broken = Broken.__new__(Broken)
    broken.__dict__.update(enc.__dict__)
    ts = 1_700_000_001_000
    records = [
        ConsumedRecord("unit.logs", 0, i, b"app", text.encode(),
                       encode_headers("text/plain", ts), ts)
        for i, text in enumerate(["fine one", "explode now", "fine two"])
    ]
    ok, _ = parse_records(Modality.LOGS, records, key_prefix=PREFIX, space=SPACE)
    batch = embed_records(broken, Modality.LOGS, ok, thumb_max_width=32)
    assert [i.record.offset for i in batch.items] == [0, 2]
    assert [(d.record.offset, d.stage) for d in batch.dead] == [(1, STAGE_ENCODE)]
    assert batch.dead[0].record.value == b"explode now"


@pytest.mark.parametrize(("clip_format", "clip_rate", "clip_type", "per_second"), [
    ("opus", 8000, "audio/ogg; codecs=opus", 7_000),  # ~3-3.9 KB/s (24 kbit/s) + ~0.7 KB of headers
    ("opus", 16000, "audio/ogg; codecs=opus", 9_000),
    ("vorbis", 8000, "audio/ogg; codecs=vorbis", 16_000),  # ~3 KB of headers a clip
    ("pcm", 8000, "audio/wav", 16_000),
    ("pcm", 4000, "audio/wav", 8_000),
])
def test_every_audio_item_keeps_a_small_clip_a_browser_can_play(
        encoders, clip_format, clip_rate, clip_type, per_second):
    """The clip decodes to the chunk's sound at the clip's rate, as long as the chunk
    (within one 20-ms codec frame), for fewer bytes a second than the bound; Ogg clips are
    served as kept with their own type, PCM wrapped as WAV."""
    import io

    import soundfile as sf

    from streams.api.items import playable

    ok, _ = parse_records(Modality.AUDIO, [consumed(r, i) for i, r in
                                           enumerate(good_records(Modality.AUDIO, 2))],
                          key_prefix=PREFIX, space=SPACE)
    batch = embed_records(encoders[Modality.AUDIO], Modality.AUDIO, ok, thumb_max_width=32,
                          clip_rate=clip_rate, clip_format=clip_format)
    for item, doc in zip(batch.items, batch.docs, strict=True):
        sent, _ = sf.read(io.BytesIO(item.record.payload))
        seconds = len(sent) / sf.info(io.BytesIO(item.record.payload)).samplerate
        assert len(doc.clip) <= per_second * seconds, f"{len(doc.clip)} B for {seconds} s"
        assert item.evidence["audio_url"] == f"/items/{doc.key}/audio"
        body, media = playable(doc.clip, doc.clip_type)
        assert media == clip_type
        if clip_format != "pcm":
            assert body == doc.clip and doc.clip_type == clip_type  # no re-encoding
        played, rate = sf.read(io.BytesIO(body))
        assert rate == clip_rate and played.ndim == 1
        assert abs(len(played) - clip_rate * seconds) <= 0.02 * clip_rate
        # the same sound: the chunk's tone, sampled at the clip's rate
        t = np.arange(len(played)) / clip_rate
        expected = np.interp(t, np.arange(len(sent)) / (len(sent) / seconds), sent)
        assert np.corrcoef(played, expected)[0, 1] > 0.9


def test_no_clip_rate_keeps_no_clip(encoders):
    ok, _ = parse_records(Modality.AUDIO, [consumed(good_records(Modality.AUDIO, 1)[0], 0)],
                          key_prefix=PREFIX, space=SPACE)
    batch = embed_records(encoders[Modality.AUDIO], Modality.AUDIO, ok, thumb_max_width=32)
    assert batch.docs[0].clip is None and "audio_url" not in batch.items[0].evidence


def _inline_and_pooled(enc: Any, modality: Modality, n: int, module: Any, function: str,
                       **options: Any) -> tuple[Any, Any, list[str]]:
    """`n` good records embedded without a media pool, then with one while `function` of
    `module` notes the thread it runs on."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from unittest import mock

    ok, _ = parse_records(modality, [consumed(r, i) for i, r in
                                     enumerate(good_records(modality, n))],
                          key_prefix=PREFIX, space=SPACE)
    inline = embed_records(enc, modality, ok, thumb_max_width=32, **options)
    threads: list[str] = []
    real = getattr(module, function)

    def traced(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    with ThreadPoolExecutor(2, thread_name_prefix="media") as media, \
            mock.patch.object(module, function, traced):
        pooled = embed_records(enc, modality, ok, thumb_max_width=32, media=media, **options)
    return inline, pooled, threads


def test_clips_made_in_the_media_pool_are_those_made_inline_and_off_the_calling_thread(
        encoders):
    """The worker compresses clips in its media threads while the encoder runs: the same
    sound (Ogg's stream serial numbers are random, so not the same bytes), the same
    evidence, made on another thread."""
    import io

    from streams.ingest import batch as batch_module

    inline, pooled, threads = _inline_and_pooled(encoders[Modality.AUDIO], Modality.AUDIO, 3,
                                                 batch_module, "audio_clip", clip_rate=8000)
    import soundfile as sf

    for a, b in zip(pooled.docs, inline.docs, strict=True):
        assert a.clip and b.clip
        assert np.array_equal(sf.read(io.BytesIO(a.clip))[0], sf.read(io.BytesIO(b.clip))[0])
    assert [d.clip_type for d in pooled.docs] == [d.clip_type for d in inline.docs]
    assert [i.evidence for i in pooled.items] == [i.evidence for i in inline.items]
    assert len(threads) == 3 and all(t.startswith("media") for t in threads)


class _BatchDecoding:
    """Decodes through `decode_many` in one call (as nvJPEG does on CUDA), and counts how;
    `crash_on` makes the batch call crash and single decodes of that payload too."""

    model_id = "batch-decoding"

    def __init__(self, crash_on: bytes | None = None) -> None:
        self.crash_on, self.batch_calls, self.single_calls = crash_on, 0, 0

    def decode(self, payload: bytes, content_type: str | None = None) -> str:
        self.single_calls += 1
        if payload == self.crash_on:
            raise ZeroDivisionError("decoder bug")
        if payload == b"bad":
            raise EncoderInputError("not a picture")
        return payload.decode()

    def decode_many(self, payloads, content_types=None) -> list[Any]:
        self.batch_calls += 1
        if self.crash_on in payloads:
            raise ZeroDivisionError("decoder bug")
        return [EncoderInputError("not a picture") if p == b"bad" else p.decode()
                for p in payloads]


def _wire(values: list[bytes]):
    records = [ConsumedRecord(topic=f"{PREFIX}.video", partition=0, offset=i, key=b"cam",
                              value=v, headers=encode_headers("image/jpeg", 1_700_000_000_000),
                              timestamp_ms=1_700_000_000_000) for i, v in enumerate(values)]
    ok, dead = parse_records(Modality.VIDEO, records, key_prefix=PREFIX, space=SPACE)
    assert not dead
    return ok


def test_a_batch_is_decoded_by_the_encoders_batch_decoder_in_one_call():
    """So a CUDA encoder decodes a batch of JPEG frames in one nvJPEG call."""
    enc = _BatchDecoding()
    decoded, dead = decode_records(enc, _wire([b"a", b"bad", b"c"]))
    assert (enc.batch_calls, enc.single_calls) == (1, 0)
    assert [v for _, v in decoded] == ["a", "c"]
    assert [(d.record.offset, d.reason, d.stage) for d in dead] == [
        (1, "not a picture", STAGE_DECODE)]


def test_a_crashing_batch_decoder_is_pinned_on_the_record_that_crashes_it():
    enc = _BatchDecoding(crash_on=b"boom")
    decoded, dead = decode_records(enc, _wire([b"a", b"boom", b"bad", b"d"]))
    assert [v for _, v in decoded] == ["a", "d"]
    assert {d.record.offset: d.reason for d in dead} == {
        1: "decoder crashed: ZeroDivisionError('decoder bug')", 2: "not a picture"}


def test_thumbnails_made_in_the_media_pool_are_those_made_inline_and_off_the_calling_thread(
        encoders):

    from encoders import image as image_module

    inline, pooled, threads = _inline_and_pooled(encoders[Modality.VIDEO], Modality.VIDEO, 4,
                                                 image_module, "make_thumbnail")
    assert [d.thumb for d in pooled.docs] == [d.thumb for d in inline.docs]
    assert all(d.thumb and d.thumb[:2] == b"\xff\xd8" for d in pooled.docs)
    assert [i.evidence for i in pooled.items] == [i.evidence for i in inline.items]
    assert len(threads) == 4 and all(t.startswith("media") for t in threads)


def test_the_null_encoder_gets_no_thumbnails_from_the_media_pool():
    from concurrent.futures import ThreadPoolExecutor

    enc = build_encoder("null", "video", device="cpu")
    ok, _ = parse_records(Modality.VIDEO, [consumed(r, i) for i, r in
                                           enumerate(good_records(Modality.VIDEO, 2))],
                          key_prefix=PREFIX, space=SPACE)
    with ThreadPoolExecutor(1) as media:
        batch = embed_records(enc, Modality.VIDEO, ok, thumb_max_width=32, media=media)
    assert len(batch.docs) == 2 and all(d.thumb is None for d in batch.docs)


@pytest.mark.parametrize("modality", list(Modality))
@settings(max_examples=25, deadline=None)
@given(picks=st.lists(st.integers(0, 5), min_size=1, max_size=8))
def test_one_record_parsed_and_decoded_alone_is_what_the_batch_steps_make_of_it(
        encoders, modality, picks):
    """The media threads decode each record as it arrives (`parse_and_decode`): any mix of
    good records, corrupt payloads and broken headers comes out as the batch functions
    would have it: the same decoded value, or a dead letter with the same reason and stage."""
    bad = [r for r in bad_records() if r.modality is modality]
    pool = [*good_records(modality, 3), *bad]
    records = [consumed(pool[i % len(pool)], n) for n, i in enumerate(picks)]
    records.append(ConsumedRecord(records[0].topic, 0, len(records), None, b"x",
                                  [("content-type", b"nope/nope")], 1))  # wire format
    ok, dead = parse_records(modality, records, key_prefix=PREFIX, space=SPACE)
    decoded, more_dead = decode_records(encoders[modality], ok)
    by_offset: dict[int, object] = {d.record.offset: (d.reason, d.stage)
                                    for d in dead + more_dead}
    by_offset |= {rec.offset: value for rec, value in decoded}
    for record in records:
        alone = parse_and_decode(encoders[modality], modality, record, key_prefix=PREFIX,
                                 space=SPACE)
        expected = by_offset[record.offset]
        if isinstance(expected, tuple):
            assert (alone.reason, alone.stage) == expected
        else:
            rec, value = alone
            assert rec.offset == record.offset
            same = (torch.equal(value, expected) if isinstance(value, torch.Tensor)
                    else np.array_equal(value, expected) if isinstance(value, np.ndarray)
                    else value == expected)
            assert same


@pytest.mark.gpu  # skipped without CUDA (tests/conftest.py); `make bench-gpu` runs it
def test_on_cuda_a_batch_of_frames_decodes_in_one_nvjpeg_call_with_thumbnails_as_on_cpu():
    """The GPU worker's path: no decoding ahead, the batch decoded on the device, each
    thumbnail shrunk there and only then copied, the same size as the CPU path's."""
    from concurrent.futures import ThreadPoolExecutor

    from encoders.image import decode_image

    on_cpu, on_gpu = (build_encoder("trivial", "video", device=d) for d in ("cpu", "cuda"))
    assert on_cpu.decode_ahead and not on_gpu.decode_ahead
    ok, _ = parse_records(Modality.VIDEO, [consumed(r, i) for i, r in
                                           enumerate(good_records(Modality.VIDEO, 4))],
                          key_prefix=PREFIX, space=SPACE)
    decoded, dead = decode_records(on_gpu, ok)
    assert not dead and all(v.is_cuda for _, v in decoded)
    with ThreadPoolExecutor(2) as media:
        gpu = embed_records(on_gpu, Modality.VIDEO, ok, thumb_max_width=32, media=media)
    cpu = embed_records(on_cpu, Modality.VIDEO, ok, thumb_max_width=32)
    assert [decode_image(d.thumb).shape for d in gpu.docs] == \
        [decode_image(d.thumb).shape for d in cpu.docs]


def test_embedding_decoded_records_leaves_the_callers_dead_letters_as_they_were(encoders):
    """The pipeline retries the same call after a bug: a refusal must not count twice."""
    from streams.ingest.batch import DeadLetter, embed_decoded

    class _Refusing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def encode(self, items: Sequence[Any]) -> torch.Tensor:
            if any("poison" in i for i in items):
                raise EncoderInputError("cannot embed poison")
            return self.inner.encode(items)

    ok, _ = parse_records(Modality.LOGS, [consumed(r, i) for i, r in
                                          enumerate(good_records(Modality.LOGS, 3))],
                          key_prefix=PREFIX, space=SPACE)
    decoded = [(ok[0], "fine line"), (ok[1], "poison line"), (ok[2], "another line")]
    earlier = [DeadLetter(consumed(good_records(Modality.LOGS, 1)[0], 99), "bad", STAGE_WIRE)]
    for _ in range(2):
        batch = embed_decoded(_Refusing(encoders[Modality.LOGS]), Modality.LOGS, decoded,
                              earlier, 0.0, thumb_max_width=32)
        assert [(d.record.offset, d.stage) for d in batch.dead] == [(99, STAGE_WIRE),
                                                                    (1, STAGE_ENCODE)]
        assert len(batch.items) == 2
    assert len(earlier) == 1
