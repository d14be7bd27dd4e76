"""The wire format: what producers write parses back identically; bad records say why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encoders.modality import Modality
from streams.core.errors import WireFormatError
from streams.core.wire import (
    HEADER_CONTENT_TYPE,
    HEADER_ERROR,
    HEADER_ORIGIN_OFFSET,
    HEADER_ORIGIN_PARTITION,
    HEADER_ORIGIN_TOPIC,
    HEADER_TS,
    MAX_PAYLOAD_BYTES,
    MAX_TS_MS,
    MIN_TS_MS,
    SOURCE_ID_MAX_BYTES,
    check_content_type,
    deadletter_headers,
    encode_headers,
    item_key,
    parse_content_type,
    parse_record,
    pcm_format,
    validate_source_id,
)

VALID_TYPES = {
    Modality.VIDEO: ["image/jpeg", "image/png", "IMAGE/JPEG"],
    Modality.AUDIO: ["audio/wav", "audio/x-wav", "audio/flac", "audio/L16;rate=16000;channels=1",
                     "audio/L16; rate=44100", "audio/l16;rate=8000;channels=2"],
    Modality.LOGS: ["text/plain", "text/plain; charset=utf-8", "application/json",
                    "application/json; charset=UTF-8"],
}


def _parse(modality: Modality | str = Modality.LOGS, **overrides: object):
    fields: dict[str, object] = dict(
        topic="lookout.logs", partition=0, offset=7, key=b"web-1", value=b"hello",
        headers=encode_headers("text/plain", 1_700_000_000_000), timestamp_ms=5,
        space="m-1:float32",
    )
    fields.update(overrides)
    return parse_record(modality, **fields)  # type: ignore[arg-type]


def _source_ids() -> st.SearchStrategy[str]:
    chars = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=",")
    return st.text(chars, min_size=1, max_size=40).filter(
        lambda s: len(s.encode("utf-8")) <= SOURCE_ID_MAX_BYTES)


@st.composite
def _records(draw: st.DrawFn) -> tuple[Modality, str]:
    modality = draw(st.sampled_from(list(VALID_TYPES)))
    return modality, draw(st.sampled_from(VALID_TYPES[modality]))


@given(
    kind=_records(),
    source=_source_ids(),
    payload=st.binary(min_size=1, max_size=256),
    ts_ms=st.integers(MIN_TS_MS, MAX_TS_MS),
    partition=st.integers(0, 1023),
    offset=st.integers(0, 2**62),
    record_ts=st.one_of(st.none(), st.integers(0, 2**41)),
)
def test_round_trip(kind: tuple[Modality, str], source: str, payload: bytes, ts_ms: int,
                    partition: int, offset: int, record_ts: int | None) -> None:
    modality, content_type = kind
    headers = encode_headers(content_type, ts_ms)
    record = parse_record(modality, topic=f"lookout.{modality.value}", partition=partition,
                          offset=offset, key=source.encode("utf-8"), value=payload,
                          headers=headers, timestamp_ms=record_ts, space="m-1:float32")
    assert record.modality is modality
    assert record.source == source
    assert record.payload == payload
    assert record.ts_ms == ts_ms  # the header wins over the record timestamp
    assert record.content_type == content_type
    assert record.headers == dict(headers)
    assert (record.partition, record.offset) == (partition, offset)
    assert record.item_key == (
        f"lookout:item:{modality.value}:m-1:float32:lookout.{modality.value}:{partition}:{offset}")


@given(headers_as=st.sampled_from(["list", "dict", "str-values"]))
def test_headers_in_any_shape(headers_as: str) -> None:
    pairs = encode_headers("image/png", 1_700_000_000_042)
    headers = {
        "list": pairs,
        "dict": dict(pairs),
        "str-values": [(k, v.decode()) for k, v in pairs],
    }[headers_as]
    record = _parse(Modality.VIDEO, headers=headers)
    assert record.ts_ms == 1_700_000_000_042 and record.content_type == "image/png"


def test_record_timestamp_is_the_fallback() -> None:
    record = _parse(headers=[(HEADER_CONTENT_TYPE, b"text/plain")], timestamp_ms=1_700_000_001_234)
    assert record.ts_ms == 1_700_000_001_234


def test_event_times_in_seconds_are_refused_with_the_fix_in_the_message() -> None:
    with pytest.raises(WireFormatError, match=r"looks like seconds.*1732629600000"):
        _parse(headers=[(HEADER_CONTENT_TYPE, b"text/plain"), (HEADER_TS, b"1732629600")])
    with pytest.raises(WireFormatError, match="Kafka record timestamp"):
        _parse(headers=[(HEADER_CONTENT_TYPE, b"text/plain")], timestamp_ms=5)


def test_fifteen_digit_event_times_are_accepted_up_to_year_9999() -> None:
    ts = str(MAX_TS_MS).encode()
    assert len(ts) == 15
    text = (HEADER_CONTENT_TYPE, b"text/plain")
    assert _parse(headers=[text, (HEADER_TS, ts)]).ts_ms == MAX_TS_MS
    with pytest.raises(WireFormatError, match="after year 9999"):
        _parse(headers=[text, (HEADER_TS, str(MAX_TS_MS + 1).encode())])


def test_header_names_from_foreign_producers_match_case_insensitively() -> None:
    record = _parse(headers=[("Content-Type", b"text/plain"), ("Lookout-TS", b"1700000000099")])
    assert record.ts_ms == 1_700_000_000_099


def test_str_key_is_accepted() -> None:
    assert _parse(key="cam-1").source == "cam-1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key": None}, "no key"),
        ({"key": b""}, "no key"),
        ({"key": b"\xff\xfe"}, "not UTF-8"),
        ({"key": b"a,b"}, "commas"),
        ({"key": b"cam\x00"}, "control"),
        ({"key": b"x" * (SOURCE_ID_MAX_BYTES + 1)}, "longer than"),
        ({"value": None}, "empty value"),
        ({"value": b""}, "empty value"),
        ({"headers": [(HEADER_TS, b"1")]}, "missing content-type"),
        ({"headers": None}, "missing content-type"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"")]}, "missing content-type"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"image/jpeg")]}, "not accepted for logs"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"jpeg")]}, "not a media type"),
        ({"headers": [(HEADER_CONTENT_TYPE, "text/plain; charset=latin-1")]}, "charset"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"text/plain\xff")]}, "not ASCII"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"text/plain"), (HEADER_TS, b"abc")]}, "lookout-ts"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"text/plain"), (HEADER_TS, b"-5")]}, "lookout-ts"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"text/plain"), (HEADER_TS, b"1.5")]}, "lookout-ts"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"text/plain"), (HEADER_TS, b"9" * 15)]},
         "after year 9999"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"text/plain")], "timestamp_ms": None},
         "no lookout-ts header"),
        ({"headers": [(HEADER_CONTENT_TYPE, b"text/plain")], "timestamp_ms": -1},
         "no lookout-ts header"),
    ],
)
def test_bad_records_say_why(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        _parse(**overrides)


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("audio/L16", "needs a rate"),
        ("audio/L16;rate=abc", "not an integer"),
        ("audio/L16;rate=16000;channels=x", "not an integer"),
        ("audio/L16;rate=0", "outside"),
        ("audio/L16;rate=16000;channels=0", "outside"),
        ("audio/mpeg", "not accepted for audio"),
        ("audio/wav;rate", "malformed parameter"),
    ],
)
def test_bad_audio_types(content_type: str, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        check_content_type(Modality.AUDIO, content_type)


def test_pcm_format() -> None:
    assert pcm_format("audio/L16;rate=16000;channels=2") == (16000, 2)
    assert pcm_format('audio/L16; Rate="22050"') == (22050, 1)
    with pytest.raises(WireFormatError):
        pcm_format("audio/wav")


def test_parse_content_type_normalises_case_and_quotes() -> None:
    ct = parse_content_type('Text/Plain; Charset="UTF-8"')
    assert ct.media_type == "text/plain" and ct.params == {"charset": "UTF-8"}
    assert str(ct) == "text/plain;charset=UTF-8"


@pytest.mark.parametrize(
    ("content_type", "ts"),
    [("image/gif", 1), ("image/jpeg", -1), ("image/jpeg", MAX_TS_MS + 1), ("image/jpeg", 1.5)],
)
def test_encode_headers_refuses_what_parse_would_reject(content_type: str, ts: float) -> None:
    with pytest.raises(WireFormatError):
        encode_headers(content_type, ts)  # type: ignore[arg-type]


def test_encode_headers() -> None:
    assert encode_headers("image/jpeg", 1_700_000_000_123) == [
        (HEADER_CONTENT_TYPE, b"image/jpeg"), (HEADER_TS, b"1700000000123")]


def test_item_keys_carry_the_vector_space() -> None:
    """Model and dtype are in every key: an index of one space never sees another's items."""
    assert item_key("video", "lookout.frames", 3, 42, space="clip-1:float16") == (
        "lookout:item:video:clip-1:float16:lookout.frames:3:42")
    assert item_key(Modality.LOGS, "t-1.logs", 0, 1, prefix="t-1", space="m:float32") == (
        "t-1:item:logs:m:float32:t-1.logs:0:1")
    record = _parse(key_prefix="t-9", topic="t-9.logs", offset=11)
    assert record.item_key == "t-9:item:logs:m-1:float32:t-9.logs:0:11"
    with pytest.raises(ValueError, match="vector space"):
        item_key("logs", "t.logs", 0, 1, space="")


def test_deadletter_headers_keep_the_original_and_say_why() -> None:
    original = [*encode_headers("image/jpeg", 1_700_000_000_005), ("x-trace", b"abc"),
                (HEADER_ERROR, b"older reason")]
    out = deadletter_headers(original, "JPEG is truncated", topic="lookout.frames",
                             partition=2, offset=9)
    as_dict = dict(out)
    assert len(as_dict) == len(out)  # no duplicated names
    assert as_dict[HEADER_CONTENT_TYPE] == b"image/jpeg"
    assert as_dict["x-trace"] == b"abc"
    assert as_dict[HEADER_ERROR] == b"JPEG is truncated"
    assert as_dict[HEADER_ORIGIN_TOPIC] == b"lookout.frames"
    assert as_dict[HEADER_ORIGIN_PARTITION] == b"2"
    assert as_dict[HEADER_ORIGIN_OFFSET] == b"9"


def test_deadletter_reason_is_bounded_and_never_empty() -> None:
    long = dict(deadletter_headers(None, "x" * 10_000, topic="t", partition=0, offset=0))
    assert len(long[HEADER_ERROR].decode()) <= 2000
    empty = dict(deadletter_headers({}, "  ", topic="t", partition=0, offset=0))
    assert empty[HEADER_ERROR] == b"unknown error"


@given(_source_ids())
def test_valid_source_ids_pass(source: str) -> None:
    assert validate_source_id(source) == source


def test_a_payload_over_the_documented_limit_is_refused_at_parse_time() -> None:
    with pytest.raises(WireFormatError, match=r"payload too large: 1,000,001 bytes"):
        _parse(value=b"x" * (MAX_PAYLOAD_BYTES + 1))
    assert len(_parse(value=b"x" * MAX_PAYLOAD_BYTES).payload) == MAX_PAYLOAD_BYTES
