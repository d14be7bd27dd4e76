"""Request parameter parsing of the query/search/alert routes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.api.errors import ApiError
from streams.api.params import (
    parse_int,
    parse_modality,
    parse_sources,
    parse_time_ms,
)


def test_time_forms():
    assert parse_time_ms("1700000000000", "since") == 1_700_000_000_000
    assert parse_time_ms("15m", "since", now_ms=1_000_000) == 100_000
    assert parse_time_ms("2026-01-01T00:00:00Z", "since") == 1_767_225_600_000
    assert parse_time_ms(None, "since") is None
    with pytest.raises(ApiError, match="since='yesterday'"):
        parse_time_ms("yesterday", "since")


@given(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_relative_times_are_in_the_past(n, unit):
    assert parse_time_ms(f"{n}{unit}", "t", now_ms=10**15) <= 10**15


def test_modality_int_sources():
    assert parse_modality("logs") == "logs"
    with pytest.raises(ApiError, match="unknown modality 'smell'"):
        parse_modality("smell")
    with pytest.raises(ApiError, match="required"):
        parse_modality(None)
    assert parse_int("5", "k", 10, 1, 100) == 5 and parse_int(None, "k", 10, 1, 100) == 10
    with pytest.raises(ApiError, match="k must be within 1..100"):
        parse_int("0", "k", 10, 1, 100)
    assert parse_sources("a, b,") == ["a", "b"] and parse_sources(None) is None
