"""Which incarnation of an input topic a record came from, so alert ids never repeat.

Item keys name a Kafka position (topic, partition, offset). A topic deleted and created
again starts its offsets at 0, so positions repeat; alert ids and incident state built on
positions alone would then find the old incarnation's `published` flags and incidents and
suppress real alerts for the retention period. Kafka gives each incarnation its own topic
id (KIP-516); the alerting stage qualifies positions with it.

The id is read once per topic and read again when a partition's offset does not advance
past the highest one seen (a recreated topic starts again at 0; a redelivery after a
rebalance or restart also goes back, and then the id simply comes back the same).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from streams.core.errors import LookoutError

FetchIds = Callable[[Sequence[str]], Awaitable[dict[str, str]]]
"""`fetch(topics)` -> {topic: topic id} (`streams.kafka.admin.TopicIds`)."""


class UnknownTopicId(LookoutError):
    """Kafka named no id for a topic that records came from (deleted meanwhile?)."""


class TopicIncarnations:
    """Topic ids of the input topics, cached, read again when offsets go back."""

    def __init__(self, fetch: FetchIds) -> None:
        self._fetch = fetch
        self._ids: dict[str, str] = {}
        self._highest: dict[tuple[str, int], int] = {}

    async def of(self, topic: str, partition: int, offsets: Sequence[int]) -> str:
        """The id of the incarnation of `topic` that holds these offsets of `partition`
        (one batch's, any order) now."""
        tp = (topic, partition)
        if topic not in self._ids or min(offsets) <= self._highest.get(tp, -1):
            await self._refresh(topic)
            self._highest.pop(tp, None)  # counting again from this batch
        self._highest[tp] = max(max(offsets), self._highest.get(tp, -1))
        return self._ids[topic]

    async def _refresh(self, topic: str) -> None:
        fresh = (await self._fetch([topic])).get(topic)
        if fresh is None:
            raise UnknownTopicId(f"Kafka has no topic id for {topic} (deleted?)")
        if self._ids.get(topic) != fresh:
            # A new incarnation: positions seen in the old one say nothing about it.
            self._highest = {tp: o for tp, o in self._highest.items() if tp[0] != topic}
        self._ids[topic] = fresh
