"""Kafka and Redis sides of the pipeline tests: produce records, read items and topics back.

The records themselves are built by `tests.records` (pure, shared with the unit tests).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer
from kafka.producer.future import RecordMetadata

from encoders.modality import Modality
from streams.config.settings import Settings
from tests.records import InputRecord


def produce(settings: Settings, records: list[InputRecord],
            max_request_size: int = 1024 * 1024) -> list[RecordMetadata]:
    """Send records in order and wait until the broker has every one; returns where each
    landed (topic, partition, offset), in the order given. A `max_request_size` over the
    client's 1 MiB default sends what a foreign producer may (the test broker takes up
    to 8 MiB, the wire format 1,000,000 bytes)."""
    producer = KafkaProducer(
        bootstrap_servers=settings.resolved_kafka_bootstrap().split(","), acks="all",
        linger_ms=5, max_request_size=max_request_size,
    )
    try:
        futures = [producer.send(settings.input_topic(rec.modality), key=rec.source.encode(),
                                 value=rec.value, headers=rec.headers) for rec in records]
        producer.flush(timeout=60)
        return [f.get(timeout=60) for f in futures]
    finally:
        producer.close(timeout=10)


def trivial_space(modality: Modality, dtype: str = "float32") -> str:
    """The vector space (`<model>:<dtype>`) of the test workers' `trivial` encoder: part of
    every item key they write."""
    from encoders.registry import build_encoder

    return f"{build_encoder('trivial', modality.value, device='cpu').short_id}:{dtype}"


def item_keys(settings: Settings, modality: Modality) -> set[str]:
    """Every item key of `modality` in Redis under the test's prefix (SCAN, not the index)."""
    import redis

    client = redis.Redis.from_url(settings.resolved_redis_url())
    try:
        pattern = f"{settings.topic_prefix}:item:{modality.value}:*"
        return {k.decode() for k in client.scan_iter(match=pattern, count=1000)}
    finally:
        client.close()


def read_to_end(settings: Settings, topic: str, timeout_s: float = 30.0,
                **consumer_kwargs: Any) -> list:
    """Every record of `topic` (all partitions) from the start up to the end offsets the
    broker reports at the call: what is on the topic now, without waiting for it to go
    quiet. `timeout_s` bounds the read; `consumer_kwargs` go to the KafkaConsumer."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.resolved_kafka_bootstrap().split(","),
                             enable_auto_commit=False, consumer_timeout_ms=1000,
                             **consumer_kwargs)
    try:
        parts = [TopicPartition(topic, p)
                 for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s}s"
            for rec in consumer:
                if rec.offset < ends[TopicPartition(rec.topic, rec.partition)]:
                    records.append(rec)
                if all(consumer.position(tp) >= ends[tp] for tp in parts):
                    break
        return records
    finally:
        consumer.close()
