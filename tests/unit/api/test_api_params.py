"""Request parameter parsing of the query/search/alert routes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.api.errors import ApiError
from streams.api.models import SearchQuery
from streams.api.params import parse_time_ms


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


def test_search_parameters_from_a_query_string():
    params = SearchQuery.model_validate({"modality": "logs", "text": "disk", "k": "5",
                                         "sources": "a, b,"})
    assert (params.modality, params.k, params.sources) == ("logs", 5, ["a", "b"])
    assert SearchQuery.model_validate({"modality": "logs"}).sources is None
    with pytest.raises(ValidationError, match="less than or equal to 1000"):
        SearchQuery.model_validate({"modality": "logs", "k": "1001"})
