"""Composites and the site map ride the query topic: applied from records like queries."""

from __future__ import annotations

import asyncio

import pytest

from streams.core.errors import QueryValidationError
from streams.queries.composite import parse_composite
from streams.queries.sites import SITES_KEY, parse_sites
from tests.registry_stub import TP, logs_registry


@pytest.fixture()
def registry():
    return logs_registry("oom", "crash")


def composite(**kw):
    return parse_composite({"kind": "composite", "name": "db down", "sequence": ["oom", "crash"],
                            "within_s": 10, **kw})


def test_composite_is_stored_apart_from_the_plain_queries(registry):
    asyncio.run(registry.register_composite(composite(suppress_members=True)))
    assert [c.id for c in registry.composites()] == ["db-down"]
    assert [q.id for q in registry.all()] == ["crash", "oom"]
    assert registry.suppressed("oom") and not registry.suppressed("db-down")
    assert [c.id for c in registry.composites_of("crash")] == ["db-down"]


def test_a_member_cannot_be_removed_while_a_composite_names_it(registry):
    asyncio.run(registry.register_composite(composite()))
    with pytest.raises(QueryValidationError, match=r"member of composite queries \['db-down'\]"):
        asyncio.run(registry.remove("oom"))
    asyncio.run(registry.remove("db-down"))
    assert registry.composites() == []
    asyncio.run(registry.remove("oom"))


def test_unknown_members_nesting_and_id_clashes_are_refused(registry):
    with pytest.raises(QueryValidationError, match="unknown member queries"):
        asyncio.run(registry.register_composite(composite(sequence=["oom", "disk"])))
    asyncio.run(registry.register_composite(composite()))
    with pytest.raises(QueryValidationError, match="composites do not nest"):
        asyncio.run(registry.register_composite(composite(name="outer",
                                                          all_of=["db-down", "oom"],
                                                          sequence=[])))
    with pytest.raises(QueryValidationError, match="plain standing query"):
        asyncio.run(registry.register_composite(composite(name="oom", all_of=["crash", "x"],
                                                          sequence=[])))


def test_site_map_record_and_its_tombstone(registry):
    sites = parse_sites({"sites": {"server-room": ["db-*"]}})
    asyncio.run(registry.put_sites(sites))
    assert registry.sites.site_of("db-1").name == "server-room"
    registry._apply(SITES_KEY.encode(), None, TP, 1)
    assert registry.sites.site_of("db-1") is None
