"""A query registry without Kafka: what it publishes is applied at once, as a worker's
follower would apply it from the query topic. For unit tests of what reads the registry."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from encoders.modality import Modality
from encoders.registry import build_encoder
from streams.queries.model import parse_query
from streams.queries.registry import QueryRegistry, compute_pattern_vectors

TP = SimpleNamespace(topic="t.queries", partition=0)


async def direct(fn, *args):
    return fn(*args)


class TopiclessRegistry(QueryRegistry):
    async def _publish(self, query_id: str, value: bytes | None) -> None:
        self._apply(query_id.encode(), value, TP, 0)


def logs_registry(*query_names: str) -> TopiclessRegistry:
    """A registry with one text logs query per name (id = name)."""
    encoder = build_encoder("trivial", "logs", device="cpu")
    reg = TopiclessRegistry(bootstrap="unused:9092", topic="t.queries",
                            encoders={Modality.LOGS: encoder}, run_encoder=direct)
    for name in query_names:
        q = parse_query({"name": name, "modality": "logs", "positives": [name]})
        rq = asyncio.run(compute_pattern_vectors(q, encoder, direct, None))
        reg._apply(name.encode(), rq.model_dump_json().encode(), TP, 0)
    return reg
