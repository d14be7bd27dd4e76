"""Input records as a producer would send them: good frames, audio chunks and log lines,
and one of each kind of corrupt input. Pure builders (no Kafka, no Redis), shared by the
unit tests of the batch steps and the integration tests that produce them to Kafka.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np
import soundfile as sf

from encoders.modality import Modality
from streams.core.wire import encode_headers

BASE_TS_MS = 1_764_000_000_000


@dataclass(frozen=True)
class InputRecord:
    """One record to produce, and what the pipeline should make of it."""

    modality: Modality
    source: str
    ts_ms: int
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    bad_reason: str | None = None  # a substring of the expected lookout-error, or None


def jpeg_frame(i: int, width: int = 64, height: int = 48) -> bytes:
    rng = np.random.default_rng(i)
    rgb = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def png_announcing(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header says width x height; its data inflates to zeros."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                               0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def wav_chunk(i: int, seconds: float = 0.25, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    freq = 100.0 * (1.5 ** (i % 12)) + 7 * i
    rng = np.random.default_rng(i)
    wave = 0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.shape)
    out = io.BytesIO()
    sf.write(out, wave.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def log_line(i: int) -> tuple[bytes, str]:
    if i % 3 == 0:
        body = {"message": f"job {i} finished in {i % 97} ms on node-{i % 5}", "level": "info"}
        return json.dumps(body).encode(), "application/json"
    words = ["disk", "login", "timeout", "cache", "payment", "queue", "socket", "kernel"]
    return (f"{words[i % 8]} event {i}: user u{i * 7 % 1000} from 10.0.{i % 256}.{i // 256} "
            f"status={'ok' if i % 2 else 'failed'}").encode(), "text/plain"


def good_record(modality: Modality, i: int, source_count: int = 3) -> InputRecord:
    ts = BASE_TS_MS + i * 1000
    source = f"{modality.value}-src-{i % source_count}"
    if modality is Modality.VIDEO:
        value, ct = jpeg_frame(i), "image/jpeg"
    elif modality is Modality.AUDIO:
        value, ct = wav_chunk(i), "audio/wav"
    else:
        value, ct = log_line(i)
    return InputRecord(modality, source, ts, value, encode_headers(ct, ts))


def good_records(modality: Modality, n: int, start: int = 0) -> list[InputRecord]:
    return [good_record(modality, i) for i in range(start, start + n)]


def bad_records() -> list[InputRecord]:
    """One of each kind of corrupt input the acceptance criteria name, and their reasons."""
    ts = BASE_TS_MS
    jpeg = jpeg_frame(9999)
    return [
        InputRecord(Modality.VIDEO, "cam-bad", ts, jpeg[: len(jpeg) // 3],
                   encode_headers("image/jpeg", ts), bad_reason="jpeg"),
        InputRecord(Modality.AUDIO, "mic-bad", ts, b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunk",
                   encode_headers("audio/wav", ts), bad_reason="wav"),
        InputRecord(Modality.LOGS, "app-bad", ts, b"caf\xc3\x28 \xff\xfe broken",
                   encode_headers("text/plain", ts), bad_reason="utf-8"),
        InputRecord(Modality.LOGS, "app-empty", ts, b"",
                   encode_headers("text/plain", ts), bad_reason="empty value"),
        InputRecord(Modality.VIDEO, "cam-nohdr", ts, jpeg, [], bad_reason="content-type"),
    ]
