"""The agent's glue: Faust events to plain records, and holding back an abandoned batch."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from faust.transport.consumer import ConsumerMessage
from faust.types import Message

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.retry import Backoff
from streams.ingest.agents import _indexing_agent, consumed_record, hold_back


def _event(headers, timestamp=1_700_000_000.123):
    message = SimpleNamespace(topic="p.logs", partition=2, offset=41, key=b"app", value=b"line",
                              headers=headers, timestamp=timestamp, acked=False)
    return SimpleNamespace(message=message)


def test_consumed_record_copies_position_bytes_headers_and_ms_timestamp():
    rec = consumed_record(_event([("content-type", b"text/plain"), ("x", None)]))
    assert (rec.topic, rec.partition, rec.offset) == ("p.logs", 2, 41)
    assert (rec.key, rec.value) == (b"app", b"line")
    assert rec.headers == [("content-type", b"text/plain")]
    assert rec.timestamp_ms == 1_700_000_000_123
    assert rec.position == "p.logs[2]@41"


def test_dict_headers_and_missing_timestamp():
    rec = consumed_record(_event({"lookout-ts": b"5"}, timestamp=None))
    assert rec.headers == [("lookout-ts", b"5")] and rec.timestamp_ms is None


class _AckRecorder:
    """Stands in for Faust's consumer at the one call an ack makes: `consumer.ack(message)`."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        return True


def test_hold_back_keeps_faust_from_acking_the_messages_later():
    def message(offset: int) -> Message:
        return ConsumerMessage("p.logs", 0, offset, 0.0, 0, [], b"k", b"v", None)

    consumer = _AckRecorder()
    kept, held = SimpleNamespace(message=message(1)), SimpleNamespace(message=message(2))
    hold_back([held])
    for event in (kept, held):  # what take_events' finally does with each event
        event.message.ack(consumer)
    assert consumer.acked == [1]


class _Stream:
    """Hands out the given batches once, like `take_events`."""

    def __init__(self, batches: list[list[SimpleNamespace]]) -> None:
        self.batches = batches

    async def take_events(self, max_batch: int, within: float):  # noqa: ANN201
        for batch in self.batches:
            yield batch


class _FailingOnce:
    """A pipeline whose first `handle` raises (a bug past every stage's own handling)."""

    def __init__(self) -> None:
        self.handled: list[list[int]] = []

    async def handle(self, modality, records) -> None:  # noqa: ANN001
        self.handled.append([r.offset for r in records])
        if len(self.handled) == 1:
            raise TypeError("dead-letter sink bug")


def test_a_batch_that_fails_past_the_pipeline_is_handled_again_not_skipped(caplog):
    """The agent neither moves past the batch nor acks it until `handle` returns."""
    first = [_event([]), _event([])]
    first[1].message.offset = 42
    pipeline = _FailingOnce()
    agent = _indexing_agent(pipeline, Modality.LOGS, Settings(), backoff=Backoff(0.001))
    with caplog.at_level(logging.ERROR):
        asyncio.run(agent(_Stream([first, [_event([])]])))
    assert pipeline.handled == [[41, 42], [41, 42], [41]]
    assert not any(e.message.acked for e in first)  # not held back: acked normally later
    assert "dead-letter sink bug" in caplog.text


def test_a_cancelled_batch_is_held_back_and_the_cancellation_goes_on():
    class _Cancelled:
        async def handle(self, modality, records) -> None:  # noqa: ANN001
            raise asyncio.CancelledError

    batch = [_event([])]
    agent = _indexing_agent(_Cancelled(), Modality.LOGS, Settings())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(agent(_Stream([batch])))
    assert batch[0].message.acked
