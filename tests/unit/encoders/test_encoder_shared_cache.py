"""The log template cache's shared level: what a worker finds there it does not compute,
what it computes goes there only on its second sighting, and a failing store changes
nothing but speed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from encoders import log_text
from encoders.log_text import EmbeddingCache


class DictStore:
    """A `SharedVectors` in a dict, counting reads and writes (Redis in the worker)."""

    def __init__(self) -> None:
        self.vectors: dict[str, torch.Tensor] = {}
        self.reads: list[list[str]] = []
        self.writes: list[list[str]] = []

    def get_many(self, keys: Sequence[str]) -> list[torch.Tensor | None]:
        self.reads.append(list(keys))
        return [self.vectors.get(k) for k in keys]

    def put_many(self, items: dict[str, torch.Tensor]) -> None:
        self.writes.append(list(items))
        self.vectors.update(items)


class BrokenStore:
    def __init__(self) -> None:
        self.calls = 0

    def get_many(self, keys: Sequence[str]) -> list[torch.Tensor | None]:
        self.calls += 1
        raise ConnectionError("redis down")

    def put_many(self, items: dict[str, torch.Tensor]) -> None:
        self.calls += 1
        raise ConnectionError("redis down")


def vector_of(key: str) -> torch.Tensor:
    return torch.tensor([float(len(key)), float(sum(map(ord, key)) % 97)])


class Model:
    """What the cache would otherwise compute; records each call's texts."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, keys: list[str]) -> torch.Tensor:
        self.calls.append(keys)
        return torch.stack([vector_of(k) for k in keys])


def cache_with(store: object, entries: int = 100) -> EmbeddingCache:
    cache = EmbeddingCache(entries)
    cache.shared = store  # type: ignore[assignment]
    return cache


def test_a_template_is_shared_on_its_second_sighting_not_its_first() -> None:
    store, model = DictStore(), Model()
    cache = cache_with(store)
    cache.embed(["disk <num> full"], model)
    assert store.vectors == {}  # seen once: maybe a one-off line
    cache.embed(["disk <num> full"], model)
    assert list(store.vectors) == ["disk <num> full"]
    cache.embed(["disk <num> full"], model)
    assert store.writes == [["disk <num> full"]]  # written once


def test_a_fresh_worker_takes_what_its_group_shared_instead_of_computing_it() -> None:
    store = DictStore()
    first, model = cache_with(store), Model()
    for _ in range(2):
        first.embed(["disk <num> full", "user <num> logged in"], model)
    fresh_model = Model()
    fresh = cache_with(store)
    out = fresh.embed(["user <num> logged in", "new template", "disk <num> full"], fresh_model)
    assert fresh_model.calls == [["new template"]]
    assert fresh.shared_hits == 2 and fresh.misses == 1
    assert torch.equal(out, torch.stack([vector_of(k) for k in
                                         ("user <num> logged in", "new template",
                                          "disk <num> full")]))
    fresh.embed(["disk <num> full"], fresh_model)  # now a local hit: no second read
    assert store.reads[-1] == ["user <num> logged in", "new template", "disk <num> full"]


def test_all_distinct_lines_write_nothing_to_the_shared_store() -> None:
    store = DictStore()
    cache = cache_with(store)
    for i in range(50):
        cache.embed([f"free text {i}"], Model())
    assert store.writes == []


def test_a_failing_store_is_left_alone_for_a_while_and_results_are_unchanged(
        monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(log_text.time, "monotonic", lambda: clock[0])
    broken, model = BrokenStore(), Model()
    cache = cache_with(broken)
    out = cache.embed(["a b", "c"], model)
    assert torch.equal(out, torch.stack([vector_of("a b"), vector_of("c")]))
    assert broken.calls == 1
    cache.embed(["a b", "d"], model)  # "a b" would be shared now, "d" looked up: skipped
    assert broken.calls == 1
    clock[0] += log_text.SHARED_RETRY_S
    cache.embed(["e"], model)
    assert broken.calls == 2


def test_vectors_from_the_store_land_on_the_cache_device() -> None:
    store = DictStore()
    store.vectors["x"] = torch.tensor([1.0, 2.0])
    cache = EmbeddingCache(10, torch.device("meta"))
    cache.shared = store
    out = cache.embed(["x"], Model())
    assert out.device.type == "meta"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([f"t{i}" for i in range(12)]), max_size=8),
                max_size=12),
       st.integers(min_value=0, max_value=6))
def test_with_or_without_a_store_every_batch_gets_the_same_vectors(
        batches: list[list[str]], entries: int) -> None:
    """Any order of batches, any LRU size (0 = no local cache): the shared level changes
    which vectors are computed, never what a batch gets; every key is computed at most
    once per worker while it stays cached, and anything in the store is a true vector."""
    store, with_model, plain_model = DictStore(), Model(), Model()
    shared, plain = cache_with(store, entries), EmbeddingCache(entries)
    for keys in batches:
        if not keys:
            continue
        assert torch.equal(shared.embed(keys, with_model), plain.embed(keys, plain_model))
    computed = [k for call in with_model.calls for k in call]
    assert len(computed) <= len([k for call in plain_model.calls for k in call])
    for k, v in store.vectors.items():
        assert torch.equal(v, vector_of(k))
