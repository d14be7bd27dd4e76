"""Topic incarnations: a recreated topic's repeated positions get a new topic id."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streams.alerting.incarnations import TopicIncarnations, UnknownTopicId


class FakeKafka:
    """Topic ids as the cluster has them; counts the metadata reads."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids
        self.reads = 0

    async def fetch(self, topics: Sequence[str]) -> dict[str, str]:
        self.reads += 1
        return {t: self.ids[t] for t in topics if t in self.ids}


def run(coro):
    return asyncio.run(coro)


def test_ids_are_read_once_while_offsets_advance():
    kafka = FakeKafka({"logs": "id-1"})
    inc = TopicIncarnations(kafka.fetch)

    async def batches() -> list[str]:
        return [await inc.of("logs", 0, [0, 1, 2]), await inc.of("logs", 0, [3, 4]),
                await inc.of("logs", 1, [0])]

    assert run(batches()) == ["id-1", "id-1", "id-1"]
    assert kafka.reads == 1


def test_a_recreated_topic_starting_again_at_zero_gets_its_new_id():
    kafka = FakeKafka({"logs": "id-1"})
    inc = TopicIncarnations(kafka.fetch)

    async def scenario() -> list[str]:
        first = await inc.of("logs", 0, [0, 1, 2])
        kafka.ids["logs"] = "id-2"  # deleted and created again
        return [first, await inc.of("logs", 0, [0, 1]), await inc.of("logs", 0, [2, 3])]

    assert run(scenario()) == ["id-1", "id-2", "id-2"]
    assert kafka.reads == 2


def test_a_redelivered_batch_reads_the_id_again_once_and_keeps_it():
    kafka = FakeKafka({"logs": "id-1"})
    inc = TopicIncarnations(kafka.fetch)

    async def scenario() -> list[str]:
        ids = [await inc.of("logs", 0, [10, 11, 12])]
        ids.append(await inc.of("logs", 0, [11, 12]))  # redelivered after a rebalance
        ids.append(await inc.of("logs", 0, [13]))
        return ids

    assert run(scenario()) == ["id-1"] * 3
    assert kafka.reads == 2


def test_a_topic_kafka_does_not_know_is_a_clear_error():
    inc = TopicIncarnations(FakeKafka({}).fetch)
    with pytest.raises(UnknownTopicId, match="no topic id for gone"):
        run(inc.of("gone", 0, [0]))
