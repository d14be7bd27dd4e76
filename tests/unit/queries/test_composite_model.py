"""Composite query declarations: one rule, real members, refused with a message that says
what to fix."""

from __future__ import annotations

import pytest

from streams.core.errors import QueryValidationError
from streams.queries.composite import (
    CompositeMode,
    check_members,
    is_composite,
    parse_composite,
)


def body(**kw):
    return {"kind": "composite", "name": "Lobby intrusion", "all_of": ["glass", "person"],
            "within_s": 10, **kw}


def test_yaml_shape_with_bare_member_ids():
    q = parse_composite(body(group_by="label:floor", all_of=["glass", {"query_id": "person",
                                                                       "hit_threshold": 0.3}]))
    assert q.id == "lobby-intrusion" and q.mode == CompositeMode.ALL_OF
    assert q.member_ids == ["glass", "person"] and q.members[1].hit_threshold == 0.3
    assert q.clear_s == 10 and is_composite(body()) and not is_composite({"name": "x"})


@pytest.mark.parametrize(("change", "says"), [
    ({"within_s": 0}, "within_s must be > 0"),
    ({"any_of": ["a", "b"]}, "exactly one of all_of, any_of, sequence"),
    ({"all_of": ["glass"]}, "at least two member queries"),
    ({"all_of": ["glass", "glass"]}, "appears twice"),
    ({"all_of": ["lobby-intrusion", "glass"]}, "cannot be its own member"),
    ({"threshold": 0.5}, "threshold needs score"),
    ({"group_by": "room"}, "group_by"),
    ({"score": "median"}, "unknown score"),
])
def test_bad_composites_are_refused_with_the_field_to_fix(change, says):
    with pytest.raises(QueryValidationError, match=says):
        parse_composite(body(**change))


def test_members_must_be_registered_plain_queries():
    q = parse_composite(body())
    check_members(q, {"glass", "person"}, set())
    with pytest.raises(QueryValidationError, match=r"unknown member queries \['person'\]"):
        check_members(q, {"glass"}, set())
    with pytest.raises(QueryValidationError, match="composites do not nest"):
        check_members(q, {"glass"}, {"person"})
