"""The Kafka wire format of Lookout's input topics, in one place (see docs/wire-format.md).

Producers build records with `encode_headers`; the workers turn every consumed record into
a `WireRecord` with `parse_record`, which raises `WireFormatError` with a reason a person can
act on. Anything rejected goes to the dead-letter topic with `deadletter_headers`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from encoders.content_types import ContentType, ContentTypeError
from encoders.content_types import parse_content_type as _parse_content_type
from encoders.content_types import pcm_format as _pcm_format
from encoders.modality import Modality
from streams.core.errors import WireFormatError

__all__ = [
    "HEADER_CONTENT_TYPE",
    "HEADER_TS",
    "HEADER_ERROR",
    "HEADER_ORIGIN_TOPIC",
    "HEADER_ORIGIN_PARTITION",
    "HEADER_ORIGIN_OFFSET",
    "DEFAULT_KEY_PREFIX",
    "SOURCE_ID_MAX_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_TS_MS",
    "MIN_TS_MS",
    "CONTENT_TYPES",
    "ContentType",
    "WireRecord",
    "parse_content_type",
    "check_content_type",
    "pcm_format",
    "validate_source_id",
    "encode_headers",
    "parse_record",
    "deadletter_headers",
    "item_key",
    "item_key_prefix",
    "headers_dict",
]

HEADER_CONTENT_TYPE = "content-type"
HEADER_TS = "lookout-ts"
HEADER_ERROR = "lookout-error"
HEADER_ORIGIN_TOPIC = "lookout-origin-topic"
HEADER_ORIGIN_PARTITION = "lookout-origin-partition"
HEADER_ORIGIN_OFFSET = "lookout-origin-offset"

DEFAULT_KEY_PREFIX = "lookout"
SOURCE_ID_MAX_BYTES = 256
# Kafka's default message.max.bytes is ~1 MiB; stay under it with room for key and headers.
MAX_PAYLOAD_BYTES = 1_000_000
# Year ~5138: anything larger is not milliseconds since the epoch.
#: Plausible event times: from 2000-01-01 to the end of year 9999 (15 digits). A value
#: below the minimum is almost always seconds sent as milliseconds, which would put the
#: event in January 1970 and poison every latency histogram.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 253_402_300_799_999
MAX_ERROR_REASON_CHARS = 2000

# Media types (lower case) accepted on each input topic.
CONTENT_TYPES: dict[Modality, tuple[str, ...]] = {
    Modality.VIDEO: ("image/jpeg", "image/png"),
    Modality.AUDIO: ("audio/wav", "audio/x-wav", "audio/flac", "audio/l16"),
    Modality.LOGS: ("text/plain", "application/json"),
}
_TEXT_CHARSETS = ("utf-8", "utf8", "us-ascii")
_DIGITS = re.compile(r"^[0-9]{1,15}$")

HeaderValue = bytes | bytearray | memoryview | str | None
HeadersIn = Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] | None


@dataclass(frozen=True)
class WireRecord:
    """One valid input record, with where it came from; the worker's unit of work."""

    modality: Modality
    topic: str
    partition: int
    offset: int
    source: str
    ts_ms: int
    content_type: str
    payload: bytes
    headers: dict[str, bytes]
    key_prefix: str = DEFAULT_KEY_PREFIX
    #: The vector space the record is embedded into (`<model short id>:<dtype>`).
    space: str = ""

    @property
    def item_key(self) -> str:
        """The Redis hash key of this item, derived from its Kafka position (idempotent)."""
        return item_key(self.modality, self.topic, self.partition, self.offset,
                        prefix=self.key_prefix, space=self.space)


def item_key_prefix(modality: Modality | str, space: str, *,
                    prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """`<prefix>:item:<modality>:<space>:`: every item of one vector space (model and
    dtype, `<model>:<dtype>`) under one prefix, so an index never holds another model's
    vectors or vectors of another dtype."""
    if not space:
        raise ValueError("an item key needs the vector space (<model>:<dtype>) it belongs to")
    return f"{prefix}:item:{Modality(modality).value}:{space}:"


def item_key(
    modality: Modality | str,
    topic: str,
    partition: int,
    offset: int,
    *,
    prefix: str = DEFAULT_KEY_PREFIX,
    space: str,
) -> str:
    """`<prefix>:item:<modality>:<model>:<dtype>:<topic>:<partition>:<offset>`."""
    return f"{item_key_prefix(modality, space, prefix=prefix)}{topic}:{int(partition)}:" \
           f"{int(offset)}"


def parse_content_type(value: str) -> ContentType:
    """`encoders.content_types.parse_content_type`, failing as a wire-format error."""
    try:
        return _parse_content_type(value)
    except ContentTypeError as e:
        raise WireFormatError(str(e)) from None


def pcm_format(content_type: ContentType | str) -> tuple[int, int]:
    """(sample rate, channels) of an `audio/L16;rate=R;channels=C` type; channels default 1."""
    try:
        return _pcm_format(content_type)
    except ContentTypeError as e:
        raise WireFormatError(str(e)) from None


def check_content_type(modality: Modality | str, value: str | None) -> ContentType:
    """Parse `value` and check that the topic of `modality` accepts it."""
    modality = Modality(modality)
    if value is None or not value.strip():
        raise WireFormatError(
            f"missing {HEADER_CONTENT_TYPE} header; {modality.value} records need one of "
            f"{', '.join(_display_types(modality))}")
    ct = parse_content_type(value)
    if ct.media_type not in CONTENT_TYPES[modality]:
        raise WireFormatError(
            f"content-type {value!r} is not accepted for {modality.value}; use one of "
            f"{', '.join(_display_types(modality))}")
    if ct.media_type == "audio/l16":
        pcm_format(ct)
    charset = ct.params.get("charset")
    if charset is not None and charset.lower() not in _TEXT_CHARSETS:
        raise WireFormatError(
            f"charset {charset!r} is not supported; send UTF-8 and say charset=utf-8")
    return ct


def _display_types(modality: Modality) -> list[str]:
    return [("audio/L16;rate=R;channels=C" if t == "audio/l16" else t)
            for t in CONTENT_TYPES[modality]]


def _modality_of(ct: ContentType) -> Modality | None:
    for modality, types in CONTENT_TYPES.items():
        if ct.media_type in types:
            return modality
    return None


def validate_source_id(source: str) -> str:
    """A source id is 1..256 bytes of UTF-8 without control characters or commas."""
    if not source:
        raise WireFormatError("empty source id (the record key); key every record by its source")
    if len(source.encode("utf-8", "surrogatepass")) > SOURCE_ID_MAX_BYTES:
        raise WireFormatError(f"source id is longer than {SOURCE_ID_MAX_BYTES} bytes")
    for ch in source:
        if ch == "," or unicodedata.category(ch) in ("Cc", "Cs"):
            raise WireFormatError(
                f"source id {source!r} contains {ch!r}; control characters and commas are "
                "not allowed")
    return source


def encode_headers(content_type: str, ts_ms: int) -> list[tuple[str, bytes]]:
    """The headers a producer sends: content-type and lookout-ts (ms since the epoch)."""
    ct = parse_content_type(content_type)
    modality = _modality_of(ct)
    if modality is None:
        raise WireFormatError(f"content-type {content_type!r} is not accepted on any input topic")
    check_content_type(modality, content_type)
    ts = int(ts_ms)
    if ts != ts_ms:
        raise WireFormatError(f"lookout-ts {ts_ms!r} is not whole milliseconds since the epoch")
    check_event_time(ts, HEADER_TS)
    return [(HEADER_CONTENT_TYPE, content_type.strip().encode("ascii")),
            (HEADER_TS, str(ts).encode("ascii"))]


def headers_dict(headers: HeadersIn) -> dict[str, bytes]:
    """Headers as a dict of bytes (a repeated name keeps its last value); None values drop."""
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, bytes] = {}
    for name, value in pairs:
        if value is None:
            continue
        out[str(name)] = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return out


def _header(headers: dict[str, bytes], name: str) -> bytes | None:
    """Header names are lower case on the wire; accept other spellings from foreign producers."""
    if name in headers:
        return headers[name]
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _decode_ascii(name: str, value: bytes) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError as e:
        raise WireFormatError(f"header {name} is not ASCII") from e


def check_event_time(ts_ms: int, what: str) -> int:
    """`ts_ms` when it is a plausible event time in ms (see MIN_TS_MS), else WireFormatError."""
    if ts_ms < MIN_TS_MS:
        hint = (f"; it looks like seconds: send milliseconds ({ts_ms * 1000})"
                if MIN_TS_MS // 1000 <= ts_ms <= MAX_TS_MS // 1000 else "")
        raise WireFormatError(
            f"{what} {ts_ms} is before 2000-01-01 as milliseconds since the epoch{hint}")
    if ts_ms > MAX_TS_MS:
        raise WireFormatError(
            f"{what} {ts_ms} is after year 9999 as milliseconds since the epoch")
    return ts_ms


def _parse_ts(raw: bytes | None, timestamp_ms: int | None) -> int:
    if raw is None:
        if timestamp_ms is None or timestamp_ms < 0:
            raise WireFormatError(
                f"no {HEADER_TS} header and no record timestamp; send {HEADER_TS} in ms")
        return check_event_time(int(timestamp_ms), "the Kafka record timestamp")
    text = _decode_ascii(HEADER_TS, raw).strip()
    if not _DIGITS.match(text):
        raise WireFormatError(
            f"{HEADER_TS} {text[:40]!r} is not whole milliseconds since the epoch "
            "(decimal digits, e.g. 1732629600000)")
    return check_event_time(int(text), HEADER_TS)


def parse_record(
    modality: Modality | str,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | str | None,
    value: bytes | None,
    headers: HeadersIn,
    timestamp_ms: int | None,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    space: str = "",
) -> WireRecord:
    """Validate one consumed record of an input topic; raises WireFormatError saying why not."""
    modality = Modality(modality)
    if key is None or len(key) == 0:
        raise WireFormatError("record has no key; key every record by its source id")
    if isinstance(key, str):
        source = key
    else:
        try:
            source = bytes(key).decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireFormatError("record key is not UTF-8; key records by a source id") from e
    validate_source_id(source)
    if value is None or len(value) == 0:
        raise WireFormatError(f"record from {source!r} has an empty value")
    if len(value) > MAX_PAYLOAD_BYTES:
        raise WireFormatError(
            f"payload too large: {len(value):,} bytes from {source!r}; the limit is "
            f"{MAX_PAYLOAD_BYTES:,} (docs/wire-format.md): send smaller frames, shorter "
            "chunks or split the line")
    hdrs = headers_dict(headers)
    raw_ct = _header(hdrs, HEADER_CONTENT_TYPE)
    content_type = None if raw_ct is None else _decode_ascii(HEADER_CONTENT_TYPE, raw_ct).strip()
    check_content_type(modality, content_type)
    assert content_type is not None
    ts_ms = _parse_ts(_header(hdrs, HEADER_TS), timestamp_ms)
    return WireRecord(
        modality=modality,
        topic=topic,
        partition=int(partition),
        offset=int(offset),
        source=source,
        ts_ms=ts_ms,
        content_type=content_type,
        payload=bytes(value),
        headers=hdrs,
        key_prefix=key_prefix,
        space=space,
    )


def deadletter_headers(
    original_headers: HeadersIn,
    reason: str,
    *,
    topic: str,
    partition: int,
    offset: int,
) -> list[tuple[str, bytes]]:
    """Original headers plus `lookout-error` and where the record came from (origin-*)."""
    replaced = {HEADER_ERROR, HEADER_ORIGIN_TOPIC, HEADER_ORIGIN_PARTITION, HEADER_ORIGIN_OFFSET}
    kept = [(k, v) for k, v in headers_dict(original_headers).items() if k not in replaced]
    reason = (reason or "unknown error").strip() or "unknown error"
    if len(reason) > MAX_ERROR_REASON_CHARS:
        reason = reason[: MAX_ERROR_REASON_CHARS - 1] + "…"
    return [
        *kept,
        (HEADER_ERROR, reason.encode("utf-8")),
        (HEADER_ORIGIN_TOPIC, topic.encode("utf-8")),
        (HEADER_ORIGIN_PARTITION, str(int(partition)).encode("ascii")),
        (HEADER_ORIGIN_OFFSET, str(int(offset)).encode("ascii")),
    ]
