"""An existing Redis index with another layout than the worker writes is refused at start
with a message that names the difference (before: only the vector size was compared, so a
float16 switch left a FLOAT32 index that never indexed the new hashes)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.errors import IndexStoreError
from streams.index.store import IndexStore

pytestmark = pytest.mark.integration


def _ensure(settings: Settings, **layout: object) -> None:
    async def run() -> None:
        client = Redis.from_url(settings.resolved_redis_url())
        try:
            store = IndexStore(client, prefix=settings.topic_prefix, modality=Modality.LOGS,
                               model_short_id="m-1", **layout)  # type: ignore[arg-type]
            await store.ensure()
        finally:
            await client.aclose()

    asyncio.run(run())


def test_the_same_layout_is_accepted_again(settings: Settings) -> None:
    _ensure(settings, dims=8)
    _ensure(settings, dims=8)  # a restart: the index read back equals the one it would create


@pytest.mark.parametrize(("changed", "needle"), [
    ({"dims": 8, "datatype": "float16"}, "vector 8 float32 hnsw cosine instead of vector 8 "
                                         "float16"),
    ({"dims": 16}, "vector 8 float32 hnsw cosine instead of vector 16 float32"),
])
def test_another_vector_layout_is_refused_with_the_difference(
        settings: Settings, changed: dict[str, object], needle: str) -> None:
    _ensure(settings, dims=8)
    with pytest.raises(IndexStoreError, match="LOOKOUT_VECTOR_DTYPE") as refused:
        _ensure(settings, **changed)
    assert needle in str(refused.value)
