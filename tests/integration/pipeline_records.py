"""Input records for pipeline tests: good frames, audio chunks and log lines, and bad ones."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import cv2
import numpy as np
import soundfile as sf
from kafka import KafkaProducer

from encoders.modality import Modality
from streams.config.settings import Settings
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


def produce(settings: Settings, records: list[InputRecord]) -> None:
    """Send records in order and wait until the broker has every one."""
    producer = KafkaProducer(
        bootstrap_servers=settings.resolved_kafka_bootstrap().split(","), acks="all",
        linger_ms=5,
    )
    try:
        for rec in records:
            producer.send(
                settings.input_topic(rec.modality), key=rec.source.encode(), value=rec.value,
                headers=rec.headers,
            )
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def item_keys(settings: Settings, modality: Modality) -> set[str]:
    """Every item key of `modality` in Redis under the test's prefix (SCAN, not the index)."""
    import redis

    client = redis.Redis.from_url(settings.resolved_redis_url())
    try:
        pattern = f"{settings.topic_prefix}:item:{modality.value}:*"
        return {k.decode() for k in client.scan_iter(match=pattern, count=1000)}
    finally:
        client.close()


def wait_for_items(settings: Settings, expected: dict[Modality, int],
                   timeout_s: float = 90.0) -> dict[Modality, int]:
    """Poll until every modality has at least its expected number of keys; returns counts."""
    import time

    deadline = time.monotonic() + timeout_s
    counts: dict[Modality, int] = {}
    while time.monotonic() < deadline:
        counts = {m: len(item_keys(settings, m)) for m in expected}
        if all(counts[m] >= n for m, n in expected.items()):
            break
        time.sleep(0.25)
    return counts


def read_topic(settings: Settings, name: str, expected: int,
               timeout_s: float = 30.0) -> list:
    """Records of topic `<prefix>.<name>` from the start, until `expected` or the timeout."""
    import time

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topic(name), bootstrap_servers=settings.resolved_kafka_bootstrap().split(","),
        auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000,
    )
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for rec in consumer:
                records.append(rec)
                if len(records) >= expected:
                    break
    finally:
        consumer.close()
    return records
