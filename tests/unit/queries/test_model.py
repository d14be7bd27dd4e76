"""Standing-query validation, YAML loading and the apply plan."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streams.core.errors import QueryValidationError
from streams.queries.model import (
    QUERY_ID_PATTERN,
    PatternExample,
    StandingQuery,
    load_queries_file,
    parse_query,
    plan_apply,
    slugify,
)


def body(**over):
    base = {"name": "Disk full", "modality": "logs", "positives": ["disk full"]}
    base.update(over)
    return base


def test_defaults_and_id_from_name():
    q = parse_query(body())
    assert q.id == "disk-full"
    assert q.sources == ["*"]
    assert q.min_hits == 1 and q.enabled and q.severity == "warning"
    assert q.positives[0].text == "disk full"


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"modality": "smell"}, "modality"),
        ({"positives": []}, "positives"),
        ({"positives": ["   "]}, "text pattern is empty"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -2}, "threshold"),
        ({"severity": "loud"}, "severity"),
        ({"sources": [""]}, "source patterns"),
        ({"webhooks": [{"url": "ftp://x"}]}, "http:// or https://"),
        ({"positives": [{"payload_b64": "!!!"}]}, "base64"),
        ({"positives": [{"text": "a", "item_key": "k"}]}, "give one of"),
        ({"positives": [{}]}, "example is empty"),
        ({"min_hits": 0}, "min_hits"),
        ({"bogus": 1}, "bogus"),
        ({"id": "Bad Id!"}, "id"),
    ],
)
def test_invalid_queries_name_the_field(over, needle):
    with pytest.raises(QueryValidationError) as exc:
        parse_query(body(**over))
    assert needle in str(exc.value)


def test_fingerprint_ignores_payload_encoding_but_not_content():
    a = parse_query(body(positives=[{"payload_b64": base64.b64encode(b"abc").decode()}]))
    b = parse_query(body(positives=[{"payload_b64": base64.b64encode(b"abd").decode()}]))
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == a.stored().fingerprint()
    stored = a.stored().positives[0]
    assert stored.payload_b64 is None and stored.sha256


def test_yaml_loading_resolves_example_files_relative_to_file(tmp_path: Path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "bang.wav").write_bytes(b"RIFFxxxx")
    (tmp_path / "patterns.yaml").write_text(
        """
queries:
  - name: Glass break
    modality: audio
    positives: [{file: examples/bang.wav}]
    threshold: 0.7
  - id: oom
    name: Out of memory
    modality: logs
    positives: ["out of memory", "oom killer"]
    negatives: ["memory usage normal"]
    sources: ["api-*"]
"""
    )
    queries = load_queries_file(tmp_path / "patterns.yaml")
    assert [q.id for q in queries] == ["glass-break", "oom"]
    ex = queries[0].positives[0]
    assert ex.payload == b"RIFFxxxx" and ex.file == "bang.wav" and ex.content_type == "audio/x-wav"
    assert queries[1].negatives[0].text == "memory usage normal"


def test_yaml_unreadable_example_file(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("- {name: x, modality: video, positives: [{file: missing.jpg}]}\n")
    with pytest.raises(QueryValidationError, match="unreadable example file .*missing.jpg"):
        load_queries_file(path)


def test_yaml_duplicate_ids(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("- {name: x, modality: logs, positives: [a]}\n"
                    "- {name: X, modality: logs, positives: [b]}\n")
    with pytest.raises(QueryValidationError, match="appears twice"):
        load_queries_file(path)


def test_plan_apply_add_update_remove():
    q1 = parse_query(body(name="one"))
    q2 = parse_query(body(name="two"))
    q3 = parse_query(body(name="three", threshold=0.9))
    registered = {"one": q1.fingerprint(), "two": "stale", "gone": "x"}
    plan = plan_apply([q1, q2, q3], registered)
    assert plan.summary() == {
        "add": ["three"], "update": ["two"], "remove": ["gone"], "unchanged": ["one"],
    }
    assert plan_apply([q1], {"one": q1.fingerprint()}).is_empty
    # Registered with another model than the worker's: same spec, yet registered again.
    restale = plan_apply([q1], {"one": q1.fingerprint()}, stale={"one"})
    assert restale.summary()["update"] == ["one"]
    assert plan_apply([], {"a": "x"}, prune=False).is_empty


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text)


@given(st.text(min_size=1, max_size=80))
@example("Disk full")
@example("  --Disk  full!! on /data.  ")
@example("___...---")
@example("磁盘已满")
@example("\u212a")  # KELVIN SIGN: lower() makes it an ASCII "k"
@example("a" * 63 + "-" + "b" * 30)  # cut at 64 right after a separator
@example("x" * 200)
def test_slugify_gives_valid_ids_or_empty(name):
    slug = slugify(name)
    # Empty exactly when the (lower-cased) name has no ASCII letter or digit to keep.
    assert bool(slug) == bool(_alnum(name.lower())), (name, slug)
    if slug:
        assert re.fullmatch(QUERY_ID_PATTERN, slug), (name, slug)
        assert StandingQuery(id=slug, name="n", modality="logs", positives=["x"]).id == slug
        # Nothing invented, nothing reordered: the slug's letters and digits are the name's,
        # from its start (cut only by the 64-character limit).
        assert _alnum(name.lower()).startswith(_alnum(slug)), (name, slug)
        assert len(slug) <= 64
    assert slugify(slug) == slug  # idempotent: an id is its own slug


@given(
    st.floats(-1, 1, allow_nan=False),
    st.integers(1, 50),
    st.floats(0.001, 3600),
    st.lists(st.sampled_from(["cam-*", "*", "api-?", "x"]), min_size=1, max_size=3),
)
def test_roundtrip_through_json(threshold, min_hits, window, sources):
    q = parse_query(body(threshold=threshold, min_hits=min_hits, window_s=window,
                         sources=sources))
    again = StandingQuery.model_validate_json(q.model_dump_json())
    assert again == q and again.fingerprint() == q.fingerprint()


def test_example_bare_string_is_text():
    assert PatternExample.model_validate("hello").text == "hello"
