"""What `BatchPipeline.handle` does with each kind of failure: an outage (Redis, Kafka) is
waited out, a device error pauses the pipeline and reports it, a bug is retried a few times
and then dead-letters the records it belongs to (or, after indexing, is recorded) so the
partition moves on. Real trivial encoders, an in-memory index and dead-letter broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
import redis.exceptions
import torch
from hypothesis import given
from hypothesis import strategies as st

from encoders.modality import Modality
from encoders.registry import build_encoder
from streams.core.errors import RedisUnavailable
from streams.core.inference import InferencePool
from streams.core.metrics import Metrics
from streams.core.retry import Backoff
from streams.core.wire import HEADER_ERROR, HEADER_ORIGIN_OFFSET
from streams.ingest.batch import OUT_OF_MEMORY
from streams.ingest.deadletter import DeadLetterSink
from streams.ingest.pipeline import BatchPipeline, encode_threads
from streams.ingest.records import MAX_REASON_CHARS, STAGE_ERROR, ConsumedRecord, IndexedItem
from tests.records import good_records

FAST = Backoff(initial_s=0.001, max_s=0.002)
ATTEMPTS = 3
LOGS = Modality.LOGS


class Broker:
    """Takes every dead letter: (offset, lookout-error)."""

    def __init__(self) -> None:
        self.letters: list[tuple[int, str]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   headers: list[tuple[str, bytes]]) -> None:
        h = dict(headers)
        self.letters.append((int(h[HEADER_ORIGIN_OFFSET]), h[HEADER_ERROR].decode()))


class Store:
    """An index whose upserts raise `errors` first, then keep the documents."""

    name = "unit-logs"
    space = "trivial-logs:float32"

    def __init__(self, errors: Sequence[BaseException] = ()) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.keys: list[str] = []

    async def upsert(self, docs: Sequence[Any]) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.keys.extend(d.key for d in docs)


class Observer:
    """Raises `errors` first (one per call; `forever` repeats the last), then sees batches."""

    stage = "alert"

    def __init__(self, errors: Sequence[BaseException] = (), forever: bool = False) -> None:
        self.errors, self.forever = list(errors), forever
        self.calls = 0
        self.seen: list[str] = []

    async def on_batch(self, modality: Modality, items: list[IndexedItem],
                       vectors: torch.Tensor) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors[0] if self.forever else self.errors.pop(0)
        self.seen.extend(it.key for it in items)


class Scripted:
    """The trivial logs encoder, except that `encode` first asks `fail(items)` what to raise."""

    def __init__(self, fail: Callable[[Sequence[Any]], BaseException | None]) -> None:
        self.inner = build_encoder("trivial", "logs", device="cpu")
        self.fail = fail
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        self.calls += 1
        error = self.fail(items)
        if error is not None:
            raise error
        return self.inner.encode(items)


def _records(n: int) -> list[ConsumedRecord]:
    return [ConsumedRecord(f"unit.{LOGS.value}", 0, i, r.source.encode(), r.value,
                           list(r.headers), r.ts_ms)
            for i, r in enumerate(good_records(LOGS, n))]


def _pipeline(encoder: Any = None, store: Store | None = None,
              observer: Observer | None = None,
              modality: Modality = LOGS) -> tuple[BatchPipeline, Broker]:
    broker, metrics = Broker(), Metrics()
    pipeline = BatchPipeline(
        encoders={modality: encoder or build_encoder("trivial", modality.value, device="cpu")},
        index_stores={modality: store or Store()},  # type: ignore[dict-item]
        deadletters=DeadLetterSink(broker, "unit.deadletter", metrics, backoff=FAST),
        inference=InferencePool(), metrics=metrics, key_prefix="unit", thumb_max_width=32,
        observers=[observer] if observer else [], backoff=FAST, device_backoff=FAST,
        attempts=ATTEMPTS,
    )
    pipeline.ready.set()
    return pipeline, broker


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def test_a_bug_in_an_observer_is_recorded_and_the_indexed_batch_goes_through(caplog):
    observer, store = Observer([KeyError("query vanished")], forever=True), Store()
    pipeline, broker = _pipeline(store=store, observer=observer)
    with caplog.at_level(logging.ERROR):
        _run(pipeline.handle(LOGS, _records(4)))
    assert len(store.keys) == 4 and not broker.letters  # indexed, nothing dead-lettered
    assert observer.calls == ATTEMPTS
    assert pipeline.metrics.observer_failures.labels(stage="alert")._value.get() == 1
    given_up = [r for r in caplog.records if "gave up" in r.getMessage()]
    assert given_up and given_up[0].exc_info and "query vanished" in caplog.text


def test_an_observer_is_waited_on_through_a_redis_outage_however_long():
    outage = [redis.exceptions.ConnectionError("Connection refused")] * (ATTEMPTS + 5)
    observer = Observer(outage)
    pipeline, _ = _pipeline(observer=observer)
    _run(pipeline.handle(LOGS, _records(3)))
    assert observer.calls == ATTEMPTS + 6 and len(observer.seen) == 3
    assert pipeline.metrics.observer_failures.labels(stage="alert")._value.get() == 0


def test_errors_an_observer_declares_transient_are_waited_out():
    class Busy(Exception):
        pass

    observer = Observer([Busy("another worker holds the claim")] * (ATTEMPTS + 2))
    observer.transient = (Busy,)  # type: ignore[attr-defined]
    pipeline, _ = _pipeline(observer=observer)
    _run(pipeline.handle(LOGS, _records(2)))
    assert len(observer.seen) == 2


def test_a_bug_in_indexing_dead_letters_the_batch_with_the_exception_as_reason():
    store = Store([TypeError("cannot serialise " + "x" * 5000)] * 100)
    pipeline, broker = _pipeline(store=store)
    _run(pipeline.handle(LOGS, _records(3)))
    assert store.calls == ATTEMPTS and not store.keys
    assert [offset for offset, _ in broker.letters] == [0, 1, 2]
    for _, reason in broker.letters:
        assert "TypeError: cannot serialise xxx" in reason and len(reason) <= MAX_REASON_CHARS
    dead = pipeline.metrics.deadletters.labels(modality="logs", reason=STAGE_ERROR)
    assert dead._value.get() == 3


def test_a_redis_outage_while_indexing_still_pauses_and_drops_nothing():
    store = Store([RedisUnavailable("Redis is unreachable")] * (ATTEMPTS + 5))
    pipeline, broker = _pipeline(store=store)
    _run(pipeline.handle(LOGS, _records(3)))
    assert len(store.keys) == 3 and not broker.letters


def test_a_bug_while_embedding_dead_letters_the_parsed_records():
    class WrongShape(Scripted):
        def encode(self, items: Sequence[Any]) -> torch.Tensor:
            self.calls += 1
            return torch.ones(len(items))  # one dimension short: a bug, not bad input

    encoder = WrongShape(lambda items: None)
    pipeline, broker = _pipeline(encoder=encoder)
    _run(pipeline.handle(LOGS, _records(2)))
    assert encoder.calls == ATTEMPTS
    assert [offset for offset, _ in broker.letters] == [0, 1]
    assert all("IndexError" in reason for _, reason in broker.letters)


def test_a_record_too_large_for_memory_alone_is_dead_lettered_as_out_of_memory():
    def fail(items: Sequence[Any]) -> BaseException | None:
        if len(items) > 1 or "event 1:" in items[0]:
            return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        return None

    store = Store()
    pipeline, broker = _pipeline(encoder=Scripted(fail), store=store)
    _run(pipeline.handle(LOGS, _records(3)))
    assert len(store.keys) == 2
    assert [(o, r.startswith(OUT_OF_MEMORY)) for o, r in broker.letters] == [(1, True)]
    oom = pipeline.metrics.encoder_failures.labels(modality="logs", kind="out_of_memory")
    assert oom._value.get() >= 2


def test_a_device_error_pauses_the_pipeline_reports_it_and_loses_nothing():
    healed = False
    encoder = Scripted(lambda items: None if healed else torch.AcceleratorError(
        "CUDA error: an illegal memory access was encountered"))
    store = Store()
    pipeline, broker = _pipeline(encoder=encoder, store=store)

    async def scenario() -> None:
        nonlocal healed
        task = asyncio.ensure_future(pipeline.handle(LOGS, _records(3)))
        await _until(lambda: bool(pipeline.problems) and encoder.calls >= 3)
        assert "CUDA error" in pipeline.problems[0]
        assert not task.done() and not store.keys and not broker.letters
        healed = True
        await task

    _run(scenario())
    assert len(store.keys) == 3 and not broker.letters and pipeline.problems == []
    device = pipeline.metrics.encoder_failures.labels(modality="logs", kind="device")
    assert device._value.get() >= 3


def test_a_batch_the_encoder_fails_entirely_is_retried_and_unhealthy_after_n_in_a_row():
    healed = False
    problems_seen: list[int] = []
    pipeline: BatchPipeline

    def fail(items: Sequence[Any]) -> BaseException | None:
        problems_seen.append(len(pipeline.problems))
        return None if healed else RuntimeError("weights are NaN-poisoned")

    encoder = Scripted(fail)
    store = Store()
    pipeline, broker = _pipeline(encoder=encoder, store=store)
    n = pipeline.failures_before_unhealthy

    async def scenario() -> None:
        nonlocal healed
        task = asyncio.ensure_future(pipeline.handle(LOGS, _records(2)))
        await _until(lambda: bool(pipeline.problems))
        assert not task.done() and not broker.letters
        healed = True
        await task

    _run(scenario())
    # each attempt bisects a batch of 2: three encode calls per failed batch
    attempts_before_problem = [p for p in problems_seen[::3] if p == 0]
    assert len(attempts_before_problem) == n
    assert len(store.keys) == 2 and not broker.letters and pipeline.problems == []


def test_cancellation_during_an_outage_abandons_the_batch():
    """Shutdown cancels a waiting batch; it is neither indexed nor dead-lettered, so the
    agent holds it back and it is consumed again."""
    store = Store([RedisUnavailable("down")] * 1000)
    pipeline, broker = _pipeline(store=store)

    async def scenario() -> None:
        task = asyncio.ensure_future(pipeline.handle(LOGS, _records(2)))
        await _until(lambda: store.calls >= 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(scenario())
    assert not store.keys and not broker.letters


def test_prepare_writes_nothing_so_the_next_batch_may_be_prepared_before_this_one_completes():
    """Dead letters, upserts and observers all wait for `complete`: until it runs, a crash
    leaves no trace of the batch but its uncommitted offsets."""
    store, observer = Store(), Observer()
    pipeline, broker = _pipeline(store=store, observer=observer)
    bad = ConsumedRecord(f"unit.{LOGS.value}", 0, 9, b"app", b"x", [], None)  # no headers
    prepared = _run(pipeline.prepare(LOGS, [*_records(2), bad]))
    assert (store.calls, observer.calls, broker.letters) == (0, 0, [])
    assert len(prepared.batch.items) == 2 and [d.record.offset for d in prepared.dead] == [9]
    _run(pipeline.complete(prepared))
    assert len(store.keys) == 2 and len(observer.seen) == 2
    assert [offset for offset, _ in broker.letters] == [9]


@given(st.integers(1, 4096), st.integers(1, 4096), st.integers(0, 8), st.booleans())
def test_small_cpu_batches_get_the_small_thread_count_and_filling_ones_all(
        n: int, max_batch: int, small: int, on_gpu: bool) -> None:
    """The batch size says the regime: at most half full, the encoder keeps up (latency);
    fuller, it is behind (throughput: all threads). A GPU, or 0, leaves threads alone."""
    threads = encode_threads(n, max_batch, small, on_gpu)
    if on_gpu or small == 0:
        assert threads is None
    else:
        assert threads == (small if n <= max_batch / 2 else None)


def _audio_records() -> list[ConsumedRecord]:
    from tests.records import bad_records

    rows = [*good_records(Modality.AUDIO, 3),
            *(r for r in bad_records() if r.modality is Modality.AUDIO)]
    return [ConsumedRecord("unit.audio", 0, i, r.source.encode(), r.value, list(r.headers),
                           r.ts_ms) for i, r in enumerate(rows)]


def _summary(prepared: Any) -> tuple[list[str], list[tuple[int, str]], Any]:
    batch = prepared.batch
    return ([it.key for it in batch.items],
            sorted((d.record.offset, d.reason) for d in prepared.dead),
            batch.vectors)


def test_records_decoded_as_they_arrive_make_the_batch_decoding_them_inline_would():
    records = _audio_records()

    async def go() -> tuple[Any, Any, list[str]]:
        pipeline, _ = _pipeline(modality=Modality.AUDIO)
        inline = await pipeline.prepare(Modality.AUDIO, records)
        decoding = [pipeline.start_decoding(Modality.AUDIO, r) for r in records]
        assert all(d is not None for d in decoding)
        ahead = await pipeline.prepare(Modality.AUDIO, records, decoding)
        return inline, ahead, []

    inline, ahead, _ = _run(go())
    keys, dead, vectors = _summary(ahead)
    assert (keys, dead) == _summary(inline)[:2]
    assert len(keys) == 3 and len(dead) == 1 and "wav" in dead[0][1].lower()
    assert torch.equal(vectors, inline.batch.vectors)


def test_nothing_is_decoded_ahead_before_the_encoders_load_nor_for_log_lines():
    audio, _ = _pipeline(modality=Modality.AUDIO)
    audio.ready.clear()
    assert audio.start_decoding(Modality.AUDIO, _audio_records()[0]) is None
    logs, _ = _pipeline()
    assert logs.start_decoding(LOGS, _records(1)[0]) is None


def test_a_batch_whose_decoding_ahead_failed_is_decoded_again_inline(caplog):
    """A bug in the media threads must not lose the batch: it parses and decodes inline,
    where every failure is settled."""
    from concurrent.futures import Future

    records = _audio_records()
    broken: Future = Future()
    broken.set_exception(RuntimeError("media thread bug"))

    async def go() -> Any:
        pipeline, _ = _pipeline(modality=Modality.AUDIO)
        decoding = [pipeline.start_decoding(Modality.AUDIO, r) for r in records[1:]]
        return await pipeline.prepare(Modality.AUDIO, records, [broken, *decoding])

    with caplog.at_level(logging.ERROR):
        prepared = _run(go())
    keys, dead, _ = _summary(prepared)
    assert len(keys) == 3 and len(dead) == 1
    assert "decoding ahead failed" in caplog.text
