"""The agent's glue: Faust events to plain records, and holding back an abandoned batch."""

from __future__ import annotations

from types import SimpleNamespace

from faust.transport.consumer import ConsumerMessage
from faust.types import Message

from streams.ingest.agents import consumed_record, hold_back


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
