"""Producers against the real embedded Kafka: wire format, counts, order, failures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from kafka.admin import KafkaAdminClient, NewTopic

from encoders.modality import MODALITIES, Modality
from streams.config.settings import Settings
from streams.core.errors import ProducerError
from streams.core.wire import HEADER_CONTENT_TYPE, HEADER_TS, WireRecord, parse_record
from streams.demo.scenario import build_scenario
from streams.kafka.admin import TopicLayout, ensure_topics_sync
from streams.kafka.producer import LookoutProducer
from tests.integration.pipeline_records import read_to_end

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def consume(settings: Settings, modality: Modality) -> list[WireRecord]:
    """Every record of the modality's topic, parsed by the wire module, read up to the end
    offsets: callers consume after the producer under test flushed (or exited), so every
    record it wrote, a duplicate included, is before them (no waiting for quiet)."""
    return [parse_record(modality, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                         key=msg.key, value=msg.value, headers=msg.headers,
                         timestamp_ms=msg.timestamp)
            for msg in read_to_end(settings, settings.input_topic(modality), timeout_s=60.0)]


def run_cli(settings: Settings, *args: str, stdin: bytes | None = None,
            timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ,
           "LOOKOUT_HOME": str(settings.home),
           "LOOKOUT_KAFKA_BOOTSTRAP": settings.resolved_kafka_bootstrap(),
           "LOOKOUT_REDIS_URL": settings.resolved_redis_url(),
           "LOOKOUT_TOPIC_PREFIX": settings.topic_prefix,
           "LOOKOUT_PARTITIONS": str(settings.partitions)}
    return subprocess.run(
        [sys.executable, "-c", "from streams.cli import main; main()", *args],
        input=stdin.decode() if stdin else None, capture_output=True, text=True, env=env,
        cwd=REPO, timeout=timeout_s, check=False)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scenario")
    build_scenario(root, seed=11, size="small")
    return root


def _jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((24, 32, 3), 200, np.uint8))
    assert ok
    return buf.tobytes()


def _wav() -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(1600, np.int16), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_each_producer_writes_the_documented_record(settings: Settings) -> None:
    sent = {
        Modality.VIDEO: ("cam-lobby", _jpeg(), "image/jpeg", 1_700_000_000_001),
        Modality.AUDIO: ("mic-1", _wav(), "audio/wav", 1_700_000_000_002),
        Modality.LOGS: ("web-1", b'{"message": "disk full", "level": "ERROR"}',
                        "application/json", 1_700_000_000_003),
    }
    with LookoutProducer.from_settings(settings) as producer:
        ensure_topics_sync(settings.resolved_kafka_bootstrap(),
                           [settings.input_topic(m) for m in MODALITIES], TopicLayout(1))
        source, payload, ctype, ts = sent[Modality.VIDEO]
        producer.send_frame(source, payload, ts, ctype)
        source, payload, ctype, ts = sent[Modality.AUDIO]
        producer.send_audio(source, payload, ts, ctype)
        source, payload, ctype, ts = sent[Modality.LOGS]
        producer.send_log(source, payload, ts, ctype)
        producer.send_log("web-1", "plain text line", 1_700_000_000_004)
    assert producer.stats.delivered == 4 and producer.stats.failed == 0
    for modality, (source, payload, ctype, ts) in sent.items():
        records = consume(settings, modality)
        first = records[0]
        assert first.topic == settings.input_topic(modality)
        assert (first.source, first.payload, first.content_type, first.ts_ms) == (
            source, payload, ctype, ts)
        assert first.headers == {HEADER_CONTENT_TYPE: ctype.encode(), HEADER_TS: str(ts).encode()}
        assert replace(first, space="m:float32").item_key == (
            f"lookout:item:{modality.value}:m:float32:{first.topic}:{first.partition}:"
            f"{first.offset}")
    logs = consume(settings, Modality.LOGS)
    assert len(logs) == 2
    assert logs[1].payload == b"plain text line"
    assert logs[1].content_type == "text/plain; charset=utf-8"


def test_thousand_log_lines_give_thousand_records_in_order(settings: Settings,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("".join(f"request {i} served in {i % 97} ms\n" for i in range(1000)))
    done = run_cli(settings, "produce", "logs", str(path), "--source", "web-1", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["delivered"] == 1000 and summary["read"] == 1000 and summary["error"] is None
    records = consume(settings, Modality.LOGS)
    assert len(records) == 1000
    assert [r.payload.decode() for r in records] == path.read_text().splitlines()
    assert all(r.source == "web-1" for r in records)


def test_order_per_source_over_partitions(settings: Settings) -> None:
    bootstrap = settings.resolved_kafka_bootstrap()
    ensure_topics_sync(bootstrap, [settings.input_topic(Modality.LOGS)], TopicLayout(4))
    sources = ["web-1", "db-1", "auth-1"]
    with LookoutProducer.from_settings(settings) as producer:
        for i in range(400):
            for source in sources:
                producer.send_log(source, f"{source} line {i}", 1_700_000_000_000 + i)
    records = consume(settings, Modality.LOGS)
    assert len(records) == 1200
    per_source: dict[str, list[str]] = defaultdict(list)
    for record in records:
        per_source[record.source].append(record.payload.decode())
    for source in sources:
        assert per_source[source] == [f"{source} line {i}" for i in range(400)]


@pytest.mark.parametrize("fps", [2.0, 5.0])
def test_produce_video_sends_one_frame_per_slot(settings: Settings, scenario: Path,
                                                fps: float) -> None:
    truth = json.loads((scenario / "truth.json").read_text())
    cam = next(s for s in truth["sources"] if s["modality"] == "video")
    base = 1_800_000_000_000
    done = run_cli(settings, "produce", "video", str(scenario / cam["file"]), "--source",
                   cam["id"], "--fps", str(fps), "--max-width", "160", "--ts-base-ms",
                   str(base), "--json")
    assert done.returncode == 0, done.stderr
    expected = round(truth["duration_s"] * fps)
    assert json.loads(done.stdout)["delivered"] == expected
    records = consume(settings, Modality.VIDEO)
    assert len(records) == expected
    assert [r.ts_ms for r in records] == [base + round(1000 * k / fps) for k in range(expected)]
    image = cv2.imdecode(np.frombuffer(records[0].payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (120, 160, 3)
    assert {r.content_type for r in records} == {"image/jpeg"}


def test_produce_audio_chunks_cover_the_file(settings: Settings, scenario: Path) -> None:
    truth = json.loads((scenario / "truth.json").read_text())
    mic = next(s for s in truth["sources"] if s["modality"] == "audio")
    base = 1_800_000_000_000
    done = run_cli(settings, "produce", "audio", str(scenario / mic["file"]), "--source",
                   mic["id"], "--chunk-s", "1.0", "--hop-s", "1.0", "--sample-rate", "16000",
                   "--ts-base-ms", str(base), "--realtime", "--speed", "50", "--json")
    assert done.returncode == 0, done.stderr
    expected = int(np.ceil(truth["duration_s"]))
    records = consume(settings, Modality.AUDIO)
    assert len(records) == expected
    assert [r.ts_ms for r in records] == [base + 1000 * k for k in range(expected)]
    total = 0
    for record in records:
        samples, rate = sf.read(io.BytesIO(record.payload), dtype="float32")
        assert rate == 16000 and samples.ndim == 1
        total += len(samples)
    assert total == round(truth["duration_s"] * 16000)


def test_produce_scenario_logs_stamps_lines_by_offset(settings: Settings,
                                                      scenario: Path) -> None:
    truth = json.loads((scenario / "truth.json").read_text())
    src = next(s for s in truth["sources"] if s["modality"] == "logs")
    rows = [json.loads(x) for x in (scenario / src["file"]).read_text().splitlines()]
    base = 1_800_000_000_000
    done = run_cli(settings, "produce", "logs", str(scenario / src["file"]), "--source",
                   src["id"], "--offset-field", "t", "--ts-base-ms", str(base))
    assert done.returncode == 0, done.stderr
    records = consume(settings, Modality.LOGS)
    assert len(records) == len(rows)
    assert [r.ts_ms for r in records] == [base + round(1000 * row["t"]) for row in rows]
    assert {r.content_type for r in records} == {"application/json"}


def test_oversize_frame_stops_with_a_clear_message(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "huge.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (1600, 1200))
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8))
    writer.release()
    done = run_cli(settings, "produce", "video", str(path), "--source", "cam-big",
                   "--max-width", "0", "--jpeg-quality", "100")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lookout: error:") and "exceeds the 1,000,000-byte limit" in last
    assert "--max-width" in last and "delivered 0 of 1 read" in last


def test_failure_midway_says_how_much_was_sent(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    lines = [json.dumps({"message": f"ok {i}"}) for i in range(500)] + ["not json"]
    path.write_text("\n".join(lines) + "\n")
    done = run_cli(settings, "produce", "logs", str(path), "--source", "web-1", "--format",
                   "json")
    assert done.returncode == 1
    summary, error = done.stderr.strip().splitlines()[-2:]
    assert summary.startswith("500 lines delivered") and "stopped early" in summary
    assert "app.jsonl:501" in error and "delivered 500 of 500 read" in error
    assert len(consume(settings, Modality.LOGS)) == 500


def test_bad_input_fails_before_kafka_with_one_line(settings: Settings, tmp_path: Path) -> None:
    garbage = tmp_path / "x.mp4"
    garbage.write_bytes(b"not a video")
    for args in (["video", str(tmp_path / "missing.mp4")], ["video", str(garbage)],
                 ["audio", str(garbage)], ["logs", str(tmp_path / "missing.log")]):
        done = run_cli(settings, "produce", *args, "--source", "s-1")
        assert done.returncode == 1, args
        errors = [x for x in done.stderr.splitlines() if x.startswith("lookout: error:")]
        assert len(errors) == 1, done.stderr


def test_broker_rejection_is_raised_not_swallowed(settings: Settings) -> None:
    topic = settings.input_topic(Modality.LOGS)
    admin = KafkaAdminClient(bootstrap_servers=settings.resolved_kafka_bootstrap())
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    producer = LookoutProducer.from_settings(settings).start()
    try:
        # under our size limit, over the topic's
        producer.send_log("web-1", os.urandom(20_000).hex(), 1_700_000_000_000)
        with pytest.raises(ProducerError, match="did not accept"):
            producer.flush(30)
        assert producer.stats.failed == 1 and producer.stats.delivered == 0
    finally:
        producer.close(raise_errors=False)
