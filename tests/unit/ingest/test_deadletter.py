"""The dead-letter sink: every letter reaches the topic once, together, before it returns."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from encoders.modality import Modality
from streams.core.metrics import Metrics
from streams.core.retry import Backoff
from streams.core.wire import HEADER_ERROR, HEADER_ORIGIN_OFFSET, MAX_PAYLOAD_BYTES
from streams.ingest.deadletter import (
    HEADER_ORIGINAL_SIZE,
    KEPT_BYTES,
    DeadLetterSink,
    fit_for_kafka,
)
from streams.ingest.records import STAGE_DECODE, STAGE_WIRE, ConsumedRecord, DeadLetter


class BrokerDouble:
    """Acknowledges sends after a tick; the first `fail` sends of `flaky_offset` fail."""

    def __init__(self, flaky_offset: int = -1, fail: int = 0) -> None:
        self.acked: list[tuple[str, bytes | None, dict[str, bytes]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.flaky_offset, self.fail = flaky_offset, fail

    async def send(self, topic, key, value, headers) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            h = dict(headers)
            if int(h[HEADER_ORIGIN_OFFSET]) == self.flaky_offset and self.fail > 0:
                self.fail -= 1
                raise KafkaConnectionError("broker went away")
            self.acked.append((topic, value, h))
        finally:
            self.in_flight -= 1


def _letters(n: int) -> list[DeadLetter]:
    return [DeadLetter(ConsumedRecord("t.logs", 0, i, b"k", f"v{i}".encode(),
                                      [("x-trace", b"abc")]),
                       f"reason {i}", STAGE_WIRE if i % 2 else STAGE_DECODE)
            for i in range(n)]


def test_a_batch_of_dead_letters_is_sent_together_with_reason_and_origin():
    broker, metrics = BrokerDouble(), Metrics()
    sink = DeadLetterSink(broker, "t.deadletter", metrics)
    asyncio.run(sink.send(Modality.LOGS, _letters(10)))
    assert broker.most_in_flight == 10  # one round trip for the batch, not ten
    assert sorted(v for _, v, _ in broker.acked) == sorted(f"v{i}".encode() for i in range(10))
    for topic, value, headers in broker.acked:
        i = int(value[1:])
        assert topic == "t.deadletter" and headers[HEADER_ERROR] == f"reason {i}".encode()
        assert headers["x-trace"] == b"abc"  # the producer's own headers are kept
    counted = metrics.deadletters.labels(modality="logs", reason=STAGE_WIRE)._value.get()
    assert counted == 5


def test_a_letter_the_broker_refuses_is_retried_and_none_is_sent_twice():
    broker = BrokerDouble(flaky_offset=3, fail=2)
    sink = DeadLetterSink(broker, "t.deadletter", Metrics(), Backoff(initial_s=0.001))
    asyncio.run(sink.send(Modality.LOGS, _letters(5)))
    offsets = [int(h[HEADER_ORIGIN_OFFSET]) for _, _, h in broker.acked]
    assert sorted(offsets) == [0, 1, 2, 3, 4] and broker.fail == 0


class RefusingBroker(BrokerDouble):
    """Refuses one letter for good (not a retryable error); the others would hang."""

    async def send(self, topic, key, value, headers) -> None:
        if int(dict(headers)[HEADER_ORIGIN_OFFSET]) == 0:
            raise ValueError("record too large for the dead-letter topic")
        self.in_flight += 1
        try:
            await asyncio.sleep(60)
        finally:
            self.in_flight -= 1


def test_a_letter_refused_for_good_fails_the_batch_and_stops_the_other_sends():
    broker = RefusingBroker()
    sink = DeadLetterSink(broker, "t.deadletter", Metrics())

    async def run() -> None:
        with pytest.raises(ValueError, match="too large"):
            await sink.send(Modality.LOGS, _letters(4))
        assert broker.in_flight == 0  # nothing left sending behind the abandoned batch

    asyncio.run(asyncio.wait_for(run(), 10))


class TooSmallBroker:
    """A broker configured smaller than the record: refuses it for good, every time."""

    def __init__(self) -> None:
        self.attempts = 0

    async def send(self, topic, key, value, headers) -> None:
        self.attempts += 1
        raise MessageSizeTooLargeError("the topic's max.message.bytes is smaller")


def test_a_dead_letter_refused_for_good_is_counted_and_the_batch_moves_on(caplog):
    broker, metrics = TooSmallBroker(), Metrics()
    sink = DeadLetterSink(broker, "t.deadletter", metrics)
    with caplog.at_level("ERROR", logger="streams.ingest.deadletter"):
        asyncio.run(asyncio.wait_for(sink.send(Modality.LOGS, _letters(2)), 5))
    assert broker.attempts == 2  # no retry of a permanent refusal
    refused = metrics.deadletters_refused.labels(modality="logs", reason=STAGE_DECODE)
    assert refused._value.get() == 1
    assert "refused for good" in caplog.text and "t.logs[0]@0" in caplog.text


def test_oversize_values_keys_and_headers_are_cut_and_say_so():
    big = b"x" * (MAX_PAYLOAD_BYTES + 1)
    headers = [("content-type", b"text/plain"), ("x-junk", b"y" * 200_000)]
    key, value, out = fit_for_kafka(b"k" * 5000, big, headers)
    assert len(value) == KEPT_BYTES and len(key) == 1024
    h = dict(out)
    assert h[HEADER_ORIGINAL_SIZE] == str(len(big)).encode()
    assert h["lookout-original-key-size"] == b"5000" and h["lookout-headers-dropped"] == b"2"
    assert sum(len(k) + len(v) for k, v in out) < 10_000
    small = fit_for_kafka(b"k", b"v", [("content-type", b"text/plain")])
    assert small == (b"k", b"v", [("content-type", b"text/plain")])


def test_hundreds_of_foreign_lookout_headers_never_push_out_the_reason():
    headers = [(f"lookout-x{i}", b"z" * 4000) for i in range(500)]
    headers.append((HEADER_ERROR, b"payload too large"))
    _, _, out = fit_for_kafka(b"k", b"v", headers)
    assert dict(out)[HEADER_ERROR] == b"payload too large"
    assert sum(len(k) + len(v) for k, v in out) <= 70_000


def test_a_refusal_wrapped_by_the_producer_is_still_a_refusal(caplog):
    class Wrapped(Exception):
        pass

    class WrappingBroker:
        async def send(self, topic, key, value, headers) -> None:
            try:
                raise MessageSizeTooLargeError("too large for max_request_size")
            except MessageSizeTooLargeError as e:
                raise Wrapped("ProducerSendError") from e  # what faust does

    metrics = Metrics()
    sink = DeadLetterSink(WrappingBroker(), "t.deadletter", metrics)
    asyncio.run(asyncio.wait_for(sink.send(Modality.LOGS, _letters(1)), 5))
    refused = metrics.deadletters_refused.labels(modality="logs", reason=STAGE_DECODE)
    assert refused._value.get() == 1
