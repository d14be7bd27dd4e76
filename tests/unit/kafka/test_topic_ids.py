"""`TopicIds` keeps one admin client open for the alerting stage's topic-id lookups: the
first matching batch must not pay for connecting, an error must not leave a broken client
behind, lookups must not queue behind one that waits out an outage, and stopping must not
wait for them. kafka-python's `KafkaAdminClient` is replaced by a recording fake; the real
client is exercised by the integration test of a recreated topic (test_alerting)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from streams.kafka.admin import TopicIds, TopicSetupError


class FakeAdmin:
    """Answers describe_topics from `ids`; `fail` makes the next call raise; `gate` holds
    calls until set; `barrier` lets two calls prove they ran at once."""

    made: list[FakeAdmin] = []
    ids: dict[str, str] = {}
    fail: list[Exception] = []
    gate: threading.Event | None = None
    entered = threading.Event()
    barrier: threading.Barrier | None = None

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.closed = False
        self.calls = 0
        FakeAdmin.made.append(self)

    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        self.calls += 1
        FakeAdmin.entered.set()
        if FakeAdmin.barrier is not None:
            FakeAdmin.barrier.wait(timeout=5)
        if FakeAdmin.gate is not None:
            assert FakeAdmin.gate.wait(timeout=5)
        if self.closed:
            raise OSError("closed under the call")
        if FakeAdmin.fail:
            raise FakeAdmin.fail.pop()
        return [{"name": t, "topic_id": FakeAdmin.ids[t], "error_code": 0} if t in FakeAdmin.ids
                else {"name": t, "topic_id": None, "error_code": 3} for t in topics]

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    import kafka

    FakeAdmin.made, FakeAdmin.ids, FakeAdmin.fail = [], {"logs": "id-1"}, []
    FakeAdmin.gate = FakeAdmin.barrier = None
    FakeAdmin.entered = threading.Event()
    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)


def test_lookups_share_one_client_opened_by_connect() -> None:
    ids = TopicIds("k:9092", {"security_protocol": "SSL"})

    async def run() -> list[dict[str, str]]:
        await ids.connect()
        return [await ids(["logs", "gone"]) for _ in range(3)]

    assert asyncio.run(run()) == [{"logs": "id-1"}] * 3  # a missing topic has no id
    [admin] = FakeAdmin.made
    assert admin.calls == 3
    assert admin.config["security_protocol"] == "SSL"
    assert admin.config["request_timeout_ms"] == TopicIds.TIMEOUTS_MS["request_timeout_ms"]


def test_settings_override_the_shorter_timeouts() -> None:
    asyncio.run(TopicIds("k:9092", {"request_timeout_ms": 60_000}).connect())
    assert FakeAdmin.made[0].config["request_timeout_ms"] == 60_000


def test_an_error_drops_the_client_and_the_next_lookup_connects_again() -> None:
    ids = TopicIds("k:9092")
    FakeAdmin.fail.append(OSError("broker went away"))

    async def run() -> dict[str, str]:
        with pytest.raises(TopicSetupError, match="topic ids of logs at k:9092: broker"):
            await ids(["logs"])
        return await ids(["logs"])

    assert asyncio.run(run()) == {"logs": "id-1"}
    first, second = FakeAdmin.made
    assert first.closed and not second.closed


def test_a_slow_lookup_does_not_hold_up_another() -> None:
    ids = TopicIds("k:9092")
    asyncio.run(ids.connect())
    FakeAdmin.barrier = threading.Barrier(2)  # passes only when two calls are in at once

    async def both() -> list[dict[str, str]]:
        return list(await asyncio.gather(ids(["logs"]), ids(["logs"])))

    assert asyncio.run(both()) == [{"logs": "id-1"}] * 2


def test_close_does_not_wait_for_a_lookup_and_nothing_reopens_after() -> None:
    ids = TopicIds("k:9092")
    FakeAdmin.gate = threading.Event()  # the lookup hangs, as in an outage
    errors: list[BaseException] = []

    def lookup() -> None:
        try:
            asyncio.run(ids(["logs"]))
        except TopicSetupError as e:
            errors.append(e)

    hung = threading.Thread(target=lookup)
    hung.start()
    assert FakeAdmin.entered.wait(timeout=5)  # the lookup is inside describe_topics
    ids.close()  # returns although the lookup still runs
    assert FakeAdmin.made[0].closed
    FakeAdmin.gate.set()
    hung.join(timeout=5)
    assert len(errors) == 1  # the lookup on the closed client failed

    with pytest.raises(TopicSetupError, match="closed"):
        asyncio.run(ids(["logs"]))
    assert len(FakeAdmin.made) == 1
