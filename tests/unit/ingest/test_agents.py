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
    """Hands out the given events once, like a Faust stream with acks off; records acks."""

    def __init__(self, events: list[SimpleNamespace]) -> None:
        self._events = events
        self.enable_acks = True
        self.acked: list[int] = []

    async def events(self):  # noqa: ANN201
        assert not self.enable_acks, "the agent acks itself, after each batch completes"
        for event in self._events:
            yield event

    async def ack(self, event: SimpleNamespace) -> None:
        self.acked.append(event.message.offset)


def _events(*offsets: int) -> list[SimpleNamespace]:
    events = [_event([]) for _ in offsets]
    for event, offset in zip(events, offsets, strict=True):
        event.message.offset = offset
    return events


class _Pipeline:
    """Records `prepare`/`complete` calls; `complete` of the first batch fails `fail` times
    (a bug past every stage's own handling)."""

    def __init__(self, acked: list[int], fail: int = 0) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.acked_at_complete: list[list[int]] = []
        self.acked, self.fail = acked, fail
        self.decodings: list[list[str]] = []
        self.inference = SimpleNamespace(lanes=1)  # one batch prepared at a time

    def start_decoding(self, modality, record) -> str:  # noqa: ANN001
        return f"decoding {record.offset}"

    async def prepare(self, modality, records, decoding=None):  # noqa: ANN001, ANN201
        offsets = [r.offset for r in records]
        self.calls.append(("prepare", offsets))
        self.decodings.append(list(decoding or []))
        return offsets

    async def complete(self, prepared) -> None:  # noqa: ANN001
        self.calls.append(("complete", prepared))
        self.acked_at_complete.append(list(self.acked))
        if self.fail:
            self.fail -= 1
            raise TypeError("dead-letter sink bug")


def _settings(batch: int) -> Settings:
    return Settings(batch_size_logs=batch)


def test_a_batch_that_fails_past_the_pipeline_is_completed_again_not_skipped(caplog):
    """The agent neither moves past the batch nor acks it until `complete` returns."""
    stream = _Stream(_events(41, 42, 43))
    pipeline = _Pipeline(stream.acked, fail=1)
    agent = _indexing_agent(pipeline, Modality.LOGS, _settings(2), backoff=Backoff(0.001))
    with caplog.at_level(logging.ERROR):
        asyncio.run(agent(stream))
    completes = [offsets for stage, offsets in pipeline.calls if stage == "complete"]
    assert completes[:2] == [completes[0], completes[0]]  # the same batch again
    assert sorted(o for batch in completes[1:] for o in batch) == [41, 42, 43]
    assert pipeline.acked_at_complete[:2] == [[], []]  # nothing acked before it completed
    assert stream.acked == [41, 42, 43]
    assert "dead-letter sink bug" in caplog.text


def test_every_event_is_acked_once_in_order_and_only_after_its_batch_completed():
    stream = _Stream(_events(*range(10)))
    pipeline = _Pipeline(stream.acked)
    asyncio.run(_indexing_agent(pipeline, Modality.LOGS, _settings(3))(stream))
    assert stream.acked == list(range(10))
    completes = [offsets for stage, offsets in pipeline.calls if stage == "complete"]
    for batch, acked_before in zip(completes, pipeline.acked_at_complete, strict=True):
        assert len(batch) <= 3
        assert not set(batch) & set(acked_before)


def test_each_record_is_prepared_with_the_decoding_started_as_it_arrived():
    stream = _Stream(_events(*range(7)))
    pipeline = _Pipeline(stream.acked)
    asyncio.run(_indexing_agent(pipeline, Modality.LOGS, _settings(3))(stream))
    prepared = [offsets for stage, offsets in pipeline.calls if stage == "prepare"]
    assert pipeline.decodings == [[f"decoding {o}" for o in batch] for batch in prepared]
    assert sum(prepared, []) == list(range(7))


def test_a_stopped_agent_holds_back_every_event_it_did_not_finish():
    """Shutdown cancels the agent while a batch is being written and the next prepared:
    none of their events is acked, now or by Faust on the way out."""
    entered, never = asyncio.Event(), asyncio.Event()

    class _Blocked(_Pipeline):
        async def complete(self, prepared) -> None:  # noqa: ANN001
            entered.set()
            await never.wait()  # an upsert that does not return before shutdown

    async def scenario(stream: _Stream) -> None:
        agent = asyncio.ensure_future(
            _indexing_agent(_Blocked(stream.acked), Modality.LOGS, _settings(1))(stream))
        await entered.wait()
        agent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await agent

    stream = _Stream(_events(7, 8, 9))
    asyncio.run(scenario(stream))
    assert stream.acked == []
    assert all(e.message.acked for e in stream._events[:2])  # taken, unfinished: held back
