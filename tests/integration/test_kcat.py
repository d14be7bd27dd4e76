"""Producing with kcat (librdkafka) as docs/wire-format.md shows: the worker indexes the
records, and with `-X partitioner=murmur2_random` kcat puts every source in the same
partition as the Java client, kafka-python and `lookout produce` (murmur2), so mixing
clients keeps each source's order."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer
from PIL import Image

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.kafka.admin import TopicLayout, ensure_topics_sync
from tests.integration.progress import wait_until_processed

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("kcat") is None,
                       reason="kcat missing (Debian kcat; make test installs it as root)"),
]
WIRE_FORMAT_MD = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"
SOURCES = [f"{kind}-{i}" for kind in ("web", "db", "cam", "mic") for i in range(1, 9)]


def documented_kcat(topic_doc: str) -> str:
    """The documented kcat command line for `topic_doc` (continuation lines joined)."""
    text = WIRE_FORMAT_MD.read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines()
                if x.startswith("kcat -P") and f"-t {topic_doc} " in x)
    return re.sub(r"\s+", " ", line)


def kcat(settings: Settings, command: str, topic: str, key: str, stdin: bytes = b"",
         file: Path | None = None) -> None:
    """Run a documented command with this test's broker, topic, key (and file)."""
    command = (command.replace("127.0.0.1:19092", settings.resolved_kafka_bootstrap())
               .replace(" -t lookout.logs ", f" -t {topic} ")
               .replace(" -t lookout.frames ", f" -t {topic} "))
    command = re.sub(r" -k \S+", f" -k {key}", command)
    if file is not None:
        command = command.replace(" frame.jpg", f" {file}")
    else:
        command = command.split(" <<< ")[0]
    subprocess.run(["bash", "-c", command], input=stdin, check=True, timeout=60)


def partitions_by_key(settings: Settings, topic: str, expected: int) -> dict[str, set[int]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.resolved_kafka_bootstrap(),
                             auto_offset_reset="earliest", group_id=None,
                             consumer_timeout_ms=20_000)
    seen: dict[str, set[int]] = defaultdict(set)
    count = 0
    try:
        for rec in consumer:
            seen[rec.key.decode()].add(rec.partition)
            count += 1
            if count >= expected:
                break
    finally:
        consumer.close()
    assert count == expected
    return seen


def test_kcat_as_documented_agrees_with_lookout_produce_on_partitions(settings: Settings):
    topic = settings.topic("kcat-partitions")
    ensure_topics_sync(settings.resolved_kafka_bootstrap(), [topic], TopicLayout(4))
    command = documented_kcat("lookout.logs")
    assert "-X partitioner=murmur2_random" in command
    for source in SOURCES:
        kcat(settings, command, topic, source, stdin=f"{source} via kcat\n".encode())
    producer = KafkaProducer(bootstrap_servers=settings.resolved_kafka_bootstrap(), acks="all")
    for source in SOURCES:  # kafka-python's default partitioner, as LookoutProducer uses it
        producer.send(topic, key=source.encode(), value=f"{source} via kafka-python".encode())
    producer.flush()
    producer.close()
    seen = partitions_by_key(settings, topic, 2 * len(SOURCES))
    assert {k: len(p) for k, p in seen.items()} == {s: 1 for s in SOURCES}
    assert len({p for parts in seen.values() for p in parts}) > 1  # the keys do spread


def test_a_worker_indexes_what_kcat_sends(settings: Settings, worker_process, tmp_path: Path):
    worker = worker_process()
    kcat(settings, documented_kcat("lookout.logs"), settings.input_topic(Modality.LOGS),
         "web-1", stdin=b"disk quota exceeded on /var\n")
    frame = tmp_path / "frame.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(buf, format="JPEG")
    frame.write_bytes(buf.getvalue())
    kcat(settings, documented_kcat("lookout.frames"), settings.input_topic(Modality.VIDEO),
         "cam-lobby", file=frame)
    done = wait_until_processed(settings, [worker], {Modality.LOGS: 1, Modality.VIDEO: 1})
    assert done.indexed[Modality.LOGS] == 1 and done.indexed[Modality.VIDEO] == 1, (
        done, worker.log_tail())
    assert done.deadlettered[Modality.LOGS] == done.deadlettered[Modality.VIDEO] == 0
