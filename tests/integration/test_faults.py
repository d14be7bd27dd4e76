"""Poison records on real Kafka: each is dead-lettered with its reason, every good record
around it is indexed exactly once, and no partition stays stuck."""

from __future__ import annotations

from kafka import KafkaProducer

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.wire import HEADER_ERROR, MAX_PAYLOAD_BYTES, encode_headers
from streams.ingest.deadletter import HEADER_ORIGINAL_SIZE, KEPT_BYTES
from tests.integration.pipeline_records import item_keys, read_to_end
from tests.integration.progress import wait_until_processed

BASE_TS = 1_764_000_000_000


def _produce_raw(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """What a foreign producer may send: the broker takes up to 8 MiB, our limit is 1 MB."""
    producer = KafkaProducer(bootstrap_servers=settings.resolved_kafka_bootstrap().split(","),
                             acks="all", max_request_size=4 * 1024 * 1024)
    try:
        for i, (source, value) in enumerate(records):
            producer.send(settings.input_topic(Modality.LOGS), key=source.encode(), value=value,
                          headers=encode_headers("text/plain", BASE_TS + i))
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def _deadletters(settings: Settings) -> list:
    """The dead-letter topic up to its end offsets: the worker commits a batch only after
    its dead letters are sent, so once committed that is all of them (no waiting for quiet)."""
    return read_to_end(settings, settings.topic("deadletter"),
                       max_partition_fetch_bytes=8 * 1024 * 1024)


def test_an_oversize_record_is_dead_lettered_and_its_neighbours_indexed(
    settings: Settings, worker_process
) -> None:
    worker = worker_process()
    big = b"disk full " * (120_000)  # 1.2 MB: the broker takes it, the wire format does not
    assert len(big) > MAX_PAYLOAD_BYTES
    records = [("web-1", f"line {i}".encode()) for i in range(10)]
    records[5:5] = [("web-1", big)]
    _produce_raw(settings, records)

    done = wait_until_processed(settings, [worker], {Modality.LOGS: len(records)})
    assert done.indexed[Modality.LOGS] == 10, (done, worker.log_tail())
    assert done.deadlettered[Modality.LOGS] == 1 and done.uncommitted[Modality.LOGS] == 0
    assert len(item_keys(settings, Modality.LOGS)) == 10

    (letter,) = _deadletters(settings)
    headers = dict(letter.headers)
    assert b"payload too large: 1,200,000 bytes" in headers[HEADER_ERROR]
    assert headers[HEADER_ORIGINAL_SIZE] == str(len(big)).encode()
    assert letter.value == big[:KEPT_BYTES]
