"""Log payload decoding, volatile-token masking (with hypothesis; the fast path gives the
recipe's text exactly) and the embedding cache."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from encoders import log_text
from encoders.errors import EncoderInputError
from encoders.log_text import EmbeddingCache, decode_log, normalise_log
from streams.bench.log_corpus import LogCorpus, distinct_lines


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("disk 93% full on node 7", "disk <num> full on node <num>"),
        ("GET /api/v1/items 200 15ms", "GET /api/v1/items <num> <num>"),
        ("conn from 10.0.0.17:5432 refused", "conn from <ip> refused"),
        # MACs: the IPv6 mask takes them before the <mac> step (docs/encoders.md)
        ("link up on 00:1a:2b:3c:4d:5e", "link up on <ip>"),
        ("2024-05-01T12:00:03.123Z worker started", "<ts> worker started"),
        ("req 3f2a9c1b7d0e4411 done", "req <hex> done"),
        ("ptr 0xdeadBEEF bad", "ptr <hex> bad"),
        (f"job {uuid.UUID(int=12345)} failed", "job <uuid> failed"),
        ("No space left on device on /dev/sda1", "No space left on device on /dev/sda1"),
        ("  many   spaces\there ", "many spaces here"),
        ("decade of accepted feedback", "decade of accepted feedback"),  # hex-like words stay
    ],
)
def test_normalise_masks_volatile_tokens(line: str, expected: str) -> None:
    assert normalise_log(line) == expected


template_words = st.lists(
    st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu")), min_size=1, max_size=8),
    min_size=1,
    max_size=6,
)


@given(
    words=template_words,
    values=st.lists(st.integers(min_value=0, max_value=10**12), min_size=2, max_size=2),
    ips=st.lists(st.ip_addresses(v=4).map(str), min_size=2, max_size=2),
    ids=st.lists(st.uuids().map(str), min_size=2, max_size=2),
)
def test_one_template_gives_one_text_whatever_the_values(
    words: list[str], values: list[int], ips: list[str], ids: list[str]
) -> None:
    template = " ".join(words) + " count={} from {} id {} took {}ms"
    a = template.format(values[0], ips[0], ids[0], values[1])
    b = template.format(values[1], ips[1], ids[1], values[0])
    assert normalise_log(a) == normalise_log(b)


@given(st.text(max_size=200))
def test_normalise_is_idempotent_and_leaves_no_standalone_numbers(text: str) -> None:
    once = normalise_log(text)
    assert normalise_log(once) == once
    assert not re.search(r"(?<![\w<])\d+(?![\w>])", once, flags=re.ASCII)


def masks_one_by_one(text: str) -> str:
    """The recipe as `log_recipe()` states it: every mask in order, then squeezed spaces."""
    for pattern, placeholder in log_text._MASKS:
        text = pattern.sub(placeholder, text)
    return log_text._SPACE.sub(" ", text).strip()[: log_text.MAX_LOG_CHARS]


def test_skipping_masks_that_cannot_match_changes_no_corpus_line() -> None:
    lines = LogCorpus(seed=3).lines(3000) + distinct_lines(200, seed=3)
    assert [normalise_log(x) for x in lines] == [masks_one_by_one(x) for x in lines]


fragments = st.one_of(
    st.datetimes().map(str),  # 2024-05-01 12:00:03.000123
    st.datetimes().map(lambda d: d.isoformat(timespec="milliseconds") + "Z"),
    st.dates().map(lambda d: d.strftime("%Y/%m/%d")),
    st.times().map(str),
    st.uuids().map(str),
    st.ip_addresses().map(str),
    st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b)),
    st.integers(min_value=0, max_value=2**64).map(lambda n: f"{n:x}"),
    st.integers(min_value=0, max_value=2**64).map(hex),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:g}ms"),
    st.text(alphabet="0123456789abcdefxTZ:-./,+%<>_ \t\x1c\u00a0\u2003\u0661gk", max_size=12),
    st.text(max_size=6),
)
log_like = st.lists(
    st.tuples(fragments, st.sampled_from(["", " ", ":", "-", "/", ".", "=", "[", "]", "\t"])),
    max_size=8,
).map(lambda parts: "".join(f + sep for f, sep in parts))


@given(log_like)
def test_skipping_masks_that_cannot_match_changes_no_text(text: str) -> None:
    assert normalise_log(text) == masks_one_by_one(text)


def test_decode_log_plain_and_json() -> None:
    assert decode_log(b"  disk full \n", "text/plain; charset=utf-8") == "disk full"
    record = json.dumps({"message": "disk full", "level": "error"}).encode()
    assert decode_log(record, "application/json") == "disk full"


@pytest.mark.parametrize(
    ("payload", "ctype", "reason"),
    [
        (b"", "text/plain", "empty"),
        (b"   \n", "text/plain", "blank"),
        (b"\xff\xfe\xfa", "text/plain", "UTF-8"),
        (b"{not json", "application/json", "invalid JSON"),
        (b'{"msg": "x"}', "application/json", '"message"'),
        (b"x", "application/xml", "unsupported log content-type"),
    ],
)
def test_bad_log_payloads(payload: bytes, ctype: str, reason: str) -> None:
    with pytest.raises(EncoderInputError, match=reason):
        decode_log(payload, ctype)


def test_cache_computes_each_distinct_miss_once_and_evicts_lru() -> None:
    calls: list[list[str]] = []

    def compute(keys: list[str]) -> torch.Tensor:
        calls.append(keys)
        return torch.tensor([[float(len(k))] for k in keys])

    cache = EmbeddingCache(max_entries=2)
    out = cache.embed(["a", "bb", "a"], compute)
    assert out.squeeze(1).tolist() == [1.0, 2.0, 1.0]
    assert calls == [["a", "bb"]]
    cache.embed(["a"], compute)  # hit; "a" becomes most recent
    cache.embed(["ccc"], compute)  # evicts "bb"
    assert len(cache) == 2
    cache.embed(["bb", "a"], compute)
    assert calls[-1] == ["bb"]
    assert cache.hits == 2 and cache.misses == 4
