"""Index names and keys carry model, dtype and schema version, against the real Redis:
an index the worker does not write is refused at start with what differs and the command
to run (before: a float16 switch kept the FLOAT32 index, new hashes were never indexed and
old vectors were read as float16), and `lookout index migrate` moves a deployment to a new
schema version over the same vectors while the old index stays until dropped."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis
from redis.commands.search.query import Query

from encoders.modality import Modality
from streams.cli import cli
from streams.config.settings import Settings
from streams.core.errors import IndexMismatch, IndexStoreError
from streams.index import admin
from streams.index.catalog import list_indexes
from streams.index.naming import index_alias, schema_version
from streams.index.params import VectorIndexParams
from streams.index.store import IndexStore, ItemDoc
from streams.worker.process import settings_env
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
DIMS = 8
LINES = ("disk full on db", "user login failed", "cache miss storm", "kernel panic now",
         "certificate expired soon")


def _with_redis(settings: Settings, work: Callable[[Redis], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        client = Redis.from_url(settings.resolved_redis_url())
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _store(client: Redis, settings: Settings, **layout: Any) -> IndexStore:
    return IndexStore(client, prefix=settings.topic_prefix, modality=Modality.LOGS,
                      **{"model_short_id": "m-1", "dims": DIMS, **layout})


def _ensure(settings: Settings, items: int = 0, **layout: Any) -> None:
    """Ensure the index of `layout` as a worker would at start, then write `items` items."""
    async def run(client: Redis) -> None:
        store = _store(client, settings, **layout)
        await store.ensure()
        rng = np.random.default_rng(7)
        await store.upsert([ItemDoc(
            key=f"{store.key_prefix}{settings.topic_prefix}.logs:0:{i}", source="db-1",
            ts_ms=1_700_000_000_000 + i, vector=rng.normal(size=DIMS), topic="t", partition=0,
            offset=i, content_type="text/plain", text=LINES[i]) for i in range(items)])

    _with_redis(settings, run)


def _lookout(settings: Settings, *args: str) -> str:
    env = settings_env(settings.model_copy(update={"encoder_logs": "trivial"}), os.environ)
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_same_layout_is_accepted_again(settings: Settings) -> None:
    _ensure(settings, items=2)
    _ensure(settings)  # a restart: the index read back equals the one it would create


def test_workers_starting_at_once_on_a_fresh_redis_both_come_up(settings: Settings) -> None:
    """Each checks that the index is missing, then creates it: the one that creates it
    second must read the other's index (and check its layout), not stop the worker.
    (CI saw one of two workers started together exit with "Index already exists".)"""
    async def run(client: Redis) -> list[str]:
        workers = [_store(Redis.from_url(settings.resolved_redis_url()), settings)
                   for _ in range(4)]
        try:
            await asyncio.gather(*(w.ensure() for w in workers))
        finally:
            for w in workers:
                await w.client.aclose()
        return [i.name for i in await list_indexes(client, settings.topic_prefix,
                                                   Modality.LOGS)]

    names = _with_redis(settings, run)
    assert names == [_store(None, settings).name]  # type: ignore[arg-type]


def test_a_dtype_change_is_refused_at_start_with_the_command_to_run(settings: Settings) -> None:
    _ensure(settings, items=3)
    with pytest.raises(IndexMismatch) as refused:
        _ensure(settings, datatype="float16")
    message = str(refused.value)
    assert "float32 vectors instead of LOOKOUT_VECTOR_DTYPE=float16" in message
    assert "lookout index reindex --modality logs" in message and "\n" not in message
    names = [i.name for i in _with_redis(settings, lambda c: list_indexes(
        c, settings.topic_prefix))]
    assert not [n for n in names if ":float16:" in n], "nothing is created next to the items"


def test_another_vector_size_under_the_same_name_is_refused(settings: Settings) -> None:
    _ensure(settings)
    with pytest.raises(IndexStoreError, match="vector 8 float32 hnsw cosine instead of vector "
                                              "16 float32"):
        _ensure(settings, dims=16)


def test_migrate_creates_the_new_index_over_the_same_vectors(settings: Settings) -> None:
    old_version = schema_version() - 1
    _ensure(settings, items=5, version=old_version)  # a deployment of the previous version
    with pytest.raises(IndexMismatch, match="lookout index migrate --modality logs"):
        _ensure(settings)  # the new worker refuses to start beside it

    assert "would: create" in _lookout(settings, "index", "migrate", "--dry-run")
    assert len(_with_redis(settings, lambda c: list_indexes(c, settings.topic_prefix))) == 1
    out = _lookout(settings, "index", "migrate", "--modality", "logs")
    assert "indexed: 5" in out

    _ensure(settings)  # now the worker starts
    indexes = {i.ref.version: i for i in _with_redis(
        settings, lambda c: list_indexes(c, settings.topic_prefix))}
    new, old = indexes[schema_version()], indexes[old_version]
    assert (new.docs, new.current) == (5, True)
    assert (old.docs, old.current) == (5, False), "the old index stays until dropped"

    async def search(client: Redis) -> tuple[int, int]:
        store = _store(client, settings)
        item = (await store.get_many([f"{store.key_prefix}{settings.topic_prefix}.logs:0:3"]))[0]
        hits = await store.knn(item.vector, k=5)
        alias = index_alias(settings.topic_prefix, Modality.LOGS, "m-1", "float32")
        via_alias = await client.ft(alias).search(Query("*").paging(0, 0))
        assert hits[0].key == item.key and hits[0].score == pytest.approx(1.0, abs=1e-3)
        return len(hits), via_alias.total

    assert _with_redis(settings, search) == (5, 5)
    status = _lookout(settings, "index", "status", "--json")
    assert f'"schema": {old_version}' in status

    with pytest.raises(IndexMismatch, match="current index"):
        _with_redis(settings, lambda c: admin.drop(c, settings.topic_prefix, new.name))
    assert "dropped" in _lookout(settings, "index", "drop", old.name)
    left = _with_redis(settings, lambda c: list_indexes(c, settings.topic_prefix))
    assert [i.name for i in left] == [new.name] and left[0].docs == 5


def test_reindex_re_embeds_kept_log_text_for_a_new_model(settings: Settings) -> None:
    from encoders.registry import build_encoder

    _ensure(settings, items=4)  # model m-1, 8-d
    trivial = build_encoder("trivial", "logs", device="cpu")
    with pytest.raises(IndexMismatch, match=f"model m-1 instead of the configured "
                                            f"{trivial.short_id}"):
        _ensure(settings, model_short_id=trivial.short_id, dims=trivial.dim)
    assert "would: re-embed" in _lookout(settings, "index", "reindex", "--modality", "logs",
                                         "--dry-run")
    assert "moved: 4, skipped: 0" in _lookout(settings, "index", "reindex", "--modality", "logs")
    _ensure(settings, model_short_id=trivial.short_id, dims=trivial.dim)  # the worker starts

    async def check(client: Redis) -> None:
        store = _store(client, settings, model_short_id=trivial.short_id, dims=trivial.dim)
        hits = await store.knn(trivial.encode_text([LINES[2]])[0], k=1)
        assert hits[0].key == f"{store.key_prefix}{settings.topic_prefix}.logs:0:2"
        assert hits[0].text == LINES[2] and hits[0].score == pytest.approx(1.0, abs=1e-3)

    _with_redis(settings, check)


def _index(settings: Settings) -> Any:
    return next(i for i in _with_redis(settings, lambda c: list_indexes(c, settings.topic_prefix))
                if i.ref.version == schema_version())


def test_another_algorithm_is_refused_and_the_rebuild_it_names_keeps_the_items(
        settings: Settings) -> None:
    _ensure(settings, items=5)  # the default: HNSW
    flat = VectorIndexParams("flat")
    with pytest.raises(IndexMismatch) as refused:
        _ensure(settings, params=flat)  # LOOKOUT_INDEX_ALGORITHM=flat on the next start
    name = _index(settings).name
    message = str(refused.value)
    assert (f"{name} is built with hnsw (M=16, EF_CONSTRUCTION=200), not the configured "
            "LOOKOUT_INDEX_ALGORITHM=flat: set it back to hnsw") in message
    assert f"`lookout index drop {name} --force`" in message and "\n" not in message

    assert "5 items stay" in _lookout(settings, "index", "drop", name, "--force")
    _ensure(settings, params=flat)  # the worker starts: the index is created anew
    # Redis indexes the retained hashes in the background
    assert wait_for(lambda: _index(settings).percent_indexed >= 1.0, timeout_s=30)
    rebuilt = _index(settings)
    assert (rebuilt.algorithm, rebuilt.docs, rebuilt.current) == ("flat", 5, True)

    async def nearest(client: Redis) -> None:
        store = _store(client, settings, params=flat)
        item = (await store.get_many([f"{store.key_prefix}{settings.topic_prefix}.logs:0:2"]))[0]
        hits = await store.knn(item.vector, k=5)
        assert len(hits) == 5 and hits[0].key == item.key

    _with_redis(settings, nearest)


def test_other_hnsw_build_parameters_only_warn_and_ef_runtime_goes_with_every_query(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    _ensure(settings, items=5)
    tuned = VectorIndexParams("hnsw", m=8, ef_construction=100, ef_runtime=64)
    with caplog.at_level(logging.WARNING, logger="streams.index.store"):
        _ensure(settings, params=tuned)  # starts: the index works as it was built
    assert "LOOKOUT_INDEX_HNSW_M=8 and LOOKOUT_INDEX_HNSW_EF_CONSTRUCTION=100 apply only once " \
           "it is rebuilt" in caplog.text
    status = json.loads(_lookout(settings, "index", "status", "--json"))
    assert [i["algorithm"] for i in status["indexes"]] == ["hnsw M=16 EF_CONSTRUCTION=200"]

    async def sent(client: Redis) -> list[bytes]:
        """The KNN query as Redis received it (its slow log, every command for a moment)."""
        store = _store(client, settings, params=tuned)
        item = (await store.get_many([f"{store.key_prefix}{settings.topic_prefix}.logs:0:4"]))[0]
        before = (await client.config_get("slowlog-log-slower-than"))["slowlog-log-slower-than"]
        await client.config_set("slowlog-log-slower-than", 0)
        try:
            hits = await store.knn(item.vector, k=3)
        finally:
            await client.config_set("slowlog-log-slower-than", before)
        assert hits[0].key == item.key
        return next(e["command"] for e in await client.slowlog_get(50)
                    if e["command"].startswith(f"FT.SEARCH {store.name}".encode()))

    command = _with_redis(settings, sent)
    assert b"EF_RUNTIME $EF" in command and b" EF 64" in command
