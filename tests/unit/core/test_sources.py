"""Source globs mean the same everywhere: fnmatch syntax, whole id, case-sensitive."""

from __future__ import annotations

import fnmatch

from hypothesis import given
from hypothesis import strategies as st

from streams.core.sources import compile_globs, matches, redis_prefilter

ids = st.text(alphabet="abcAB-_1*?[]", min_size=0, max_size=8)


def test_star_or_nothing_matches_every_source() -> None:
    assert compile_globs(None) is None and compile_globs([]) is None
    assert compile_globs(["cam-*", "*"]) is None
    assert matches("anything", None) and matches("anything", ["x", "*"])


def test_case_matters_and_the_whole_id_must_match() -> None:
    assert matches("cam-lobby", ["cam-*"])
    assert not matches("CAM-lobby", ["cam-*"])
    assert not matches("cam-lobby-2", ["cam-lobby"])
    assert matches("cam-1", ["cam-?"]) and not matches("cam-10", ["cam-?"])
    assert matches("db-2", ["web-*", "db-[0-9]"])


@given(st.text(alphabet="abcAB-_1", max_size=8), st.lists(ids, min_size=1, max_size=3))
def test_agrees_with_fnmatchcase_for_any_id_and_globs(source: str, globs: list[str]) -> None:
    expected = "*" in globs or any(fnmatch.fnmatchcase(source, g) for g in globs)
    assert matches(source, globs) == expected


@given(st.lists(ids, min_size=1, max_size=3))
def test_redis_prefilter_keeps_only_what_a_tag_query_can_say(globs: list[str]) -> None:
    pre = redis_prefilter(globs)
    if "*" in globs or any(ch in g for g in globs for ch in "?[]"):
        assert pre is None
    else:
        assert pre == globs
