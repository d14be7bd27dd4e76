"""The poison corpus: for each modality, every kind of bad input docs/wire-format.md says
is dead-lettered, with (a substring of) the `lookout-error` that page and the decoders
give for it. Pure builders, like tests/records.py.
"""

from __future__ import annotations

from encoders.modality import Modality
from streams.core.wire import MAX_PAYLOAD_BYTES
from tests.records import BASE_TS_MS, InputRecord, jpeg_frame, png_announcing, wav_chunk

TS = str(BASE_TS_MS).encode()
OVERSIZE = MAX_PAYLOAD_BYTES + 200_000  # the broker takes it, the wire format does not
HUGE_KEY = "k" * 5000  # over the 256-byte source id and the 1 KiB a dead letter keeps


def _headers(content_type: bytes | None, ts: bytes | None = TS) -> list[tuple[str, bytes]]:
    out = [] if content_type is None else [("content-type", content_type)]
    return out if ts is None else [*out, ("lookout-ts", ts)]


def _bad(modality: Modality, source: str, value: bytes, headers: list[tuple[str, bytes]],
         reason: str) -> InputRecord:
    return InputRecord(modality, source, BASE_TS_MS, value, headers, bad_reason=reason)


def _common(modality: Modality, good_value: bytes, content_type: bytes) -> list[InputRecord]:
    """The wire-format faults every topic refuses the same way."""
    m, src = modality, f"{modality.value}-bad"
    return [
        _bad(m, src, b"", _headers(content_type), "has an empty value"),
        _bad(m, src, good_value[:1] * OVERSIZE, _headers(content_type),
             f"payload too large: {OVERSIZE:,} bytes"),
        _bad(m, HUGE_KEY, good_value, _headers(content_type), "source id is longer than 256"),
        _bad(m, f"{src},x", good_value, _headers(content_type), "contains ','"),
        _bad(m, src, good_value, _headers(None), "missing content-type header"),
        _bad(m, src, good_value, _headers(b"application/x-unknown"), "is not accepted for"),
        _bad(m, src, good_value, _headers(content_type, b"1764000000"), "looks like seconds"),
        _bad(m, src, good_value, _headers(content_type, b"999999999999999"),
             "after year 9999"),
        _bad(m, src, good_value, _headers(content_type, b"-1764000000000"),
             "is not whole milliseconds"),
        _bad(m, src, good_value, _headers(content_type, b"17640000000000000000"),
             "is not whole milliseconds"),
    ]


def poison_video() -> list[InputRecord]:
    jpeg, m = jpeg_frame(9001), Modality.VIDEO
    return [
        *_common(m, jpeg, b"image/jpeg"),
        _bad(m, "cam-bad", jpeg[: len(jpeg) // 2], _headers(b"image/jpeg"), "truncated JPEG"),
        _bad(m, "cam-bad", jpeg, _headers(b"audio/wav"), "is not accepted for video"),
        _bad(m, "cam-bad", b"GIF89a" + bytes(64), _headers(b"image/png"), "not a JPEG or PNG"),
        # 81 megapixels announced in 0.5 KB (tests/integration/test_bombs.py has the big ones)
        _bad(m, "cam-bad", png_announcing(9000, 9000), _headers(b"image/png"),
             "refused before decoding"),
    ]


def poison_audio() -> list[InputRecord]:
    wav, m = wav_chunk(9001), Modality.AUDIO
    return [
        *_common(m, wav, b"audio/wav"),
        _bad(m, "mic-bad", wav[: len(wav) // 3], _headers(b"audio/wav"), "truncated WAV"),
        _bad(m, "mic-bad", wav, _headers(b"text/plain"), "is not accepted for audio"),
        _bad(m, "mic-bad", wav, _headers(b"audio/L16;channels=1"), "rate"),
        _bad(m, "mic-bad", b"\x00\x01\x02", _headers(b"audio/L16;rate=16000"),
             "truncated raw PCM"),
    ]


def poison_logs() -> list[InputRecord]:
    line, m = b"disk quota exceeded on /var", Modality.LOGS
    return [
        *_common(m, line, b"text/plain"),
        _bad(m, "app-bad", b"caf\xc3\x28 \xff\xfe broken", _headers(b"text/plain"),
             "not valid UTF-8"),
        _bad(m, "app-bad", b'{"level": "error"}', _headers(b"application/json"),
             'needs a string field "message"'),
        _bad(m, "app-bad", b'{"message": ', _headers(b"application/json"), "invalid JSON"),
        _bad(m, "app-bad", line, _headers(b"text/plain; charset=latin-1"), "charset"),
        _bad(m, "app-bad", b" \t\n", _headers(b"text/plain"), "blank"),
    ]


POISON = {Modality.VIDEO: poison_video, Modality.AUDIO: poison_audio,
          Modality.LOGS: poison_logs}
