"""The embedded stack serves real clients: kafka-python, aiokafka, Faust, redis-py + redisvl."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from streams.config.settings import Settings
from streams.core.errors import PortInUse, StackNotRunning
from streams.embedded import EmbeddedStack, resolve_services
from tests.helpers import free_ports, unique_name, wait_for

pytestmark = pytest.mark.integration

DIM = 8


def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _drain(consumer: KafkaConsumer, expected: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the first `expected` records (fewer if the consumer times out)."""
    got: list[tuple[bytes, bytes]] = []
    try:
        for message in consumer:
            got.append((message.key, message.value))
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    return _drain(KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=unique_name("g"),
                                auto_offset_reset="earliest", consumer_timeout_ms=20_000),
                  expected)


def _read_from_start(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    """Read partition 0 from offset 0 without a consumer group (no group coordinator needed)."""
    from kafka import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=20_000)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    return _drain(consumer, expected)


# --- Kafka ---------------------------------------------------------------------------------


def test_kafka_python_produces_and_consumes(settings: Settings) -> None:
    topic = settings.topic("logs")
    records = [(f"src-{i % 3}".encode(), f"line {i}".encode()) for i in range(20)]
    _produce(settings.kafka_bootstrap, topic, records)  # auto-created topic

    assert _consume_all(settings.kafka_bootstrap, topic, len(records)) == records


def test_aiokafka_produces_and_consumes(settings: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = settings.topic("frames")
    _create_topic(settings.kafka_bootstrap, topic)
    records = [(f"cam-{i % 2}".encode(), bytes([i]) * 100) for i in range(10)]

    async def roundtrip() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(topic, value=value, key=key)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=unique_name("g"),
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            async for message in consumer:
                got.append((message.key, message.value))
                if len(got) == len(records):
                    break
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(asyncio.wait_for(roundtrip(), 60)) == records


def test_faust_agent_consumes_and_updates_a_table(settings: Settings) -> None:
    import faust

    topic_name = settings.topic("events")
    _create_topic(settings.kafka_bootstrap, topic_name)

    async def run() -> tuple[dict[str, int], list[str]]:
        app = faust.App(
            settings.worker_id,
            broker=f"kafka://{settings.kafka_bootstrap}",
            store="memory://",
            topic_partitions=1,
            topic_replication_factor=1,
            topic_disable_leader=True,
            web_enabled=False,
        )
        events_topic = app.topic(topic_name, key_type=str, value_type=str)
        counts = app.Table("counts", default=int, partitions=1)
        seen: list[str] = []

        @app.agent(events_topic)
        async def count_events(stream):  # noqa: ANN001 - Faust's stream type
            async for source, value in stream.items():
                counts[source] += 1
                seen.append(value)

        await app.start()
        try:
            while not any(tp.topic == topic_name for tp in app.consumer.assignment()):
                await asyncio.sleep(0.1)
            sources = [b"cam-1", b"cam-1", b"cam-1", b"cam-2", b"cam-2"]
            await asyncio.to_thread(
                _produce,
                settings.kafka_bootstrap,
                topic_name,
                [(key, json.dumps(f"v{i}").encode()) for i, key in enumerate(sources)],
            )
            while len(seen) < len(sources):
                await asyncio.sleep(0.1)
            return dict(counts.items()), list(seen)
        finally:
            await app.stop()

    counts, seen = asyncio.run(asyncio.wait_for(run(), 90))

    assert counts == {"cam-1": 3, "cam-2": 2}
    assert seen == ["v0", "v1", "v2", "v3", "v4"]


# --- Redis ---------------------------------------------------------------------------------


def _vector_index(redis_url: str, prefix: str):  # noqa: ANN202 - redisvl SearchIndex
    from redisvl.index import SearchIndex

    schema = {
        "index": {"name": f"{prefix}:idx", "prefix": f"{prefix}:item", "storage_type": "hash"},
        "fields": [
            {"name": "source", "type": "tag"},
            {"name": "ts", "type": "numeric", "attrs": {"sortable": True}},
            {
                "name": "embedding",
                "type": "vector",
                "attrs": {
                    "dims": DIM,
                    "algorithm": "hnsw",
                    "distance_metric": "cosine",
                    "datatype": "float32",
                },
            },
        ],
    }
    index = SearchIndex.from_dict(schema, redis_url=redis_url)
    index.create(overwrite=True)
    return index


def _unit(seed: int) -> np.ndarray:
    vec = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vec / np.linalg.norm(vec)


def _docs(count: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"doc{i}",
            "source": "cam-a" if i % 2 == 0 else "cam-b",
            "ts": 1000 + i,
            "embedding": _unit(i).tobytes(),
        }
        for i in range(count)
    ]


def test_redisvl_index_answers_knn_and_range_with_filters(settings: Settings) -> None:
    from redisvl.query import VectorQuery, VectorRangeQuery
    from redisvl.query.filter import Num, Tag

    index = _vector_index(settings.redis_url, settings.topic_prefix)
    try:
        index.load(_docs(10), id_field="id")
        index.load([{**_docs(10)[4], "ts": 2000}], id_field="id")  # upsert overwrites

        assert index.info()["num_docs"] == 10
        knn = VectorQuery(
            _unit(4).tolist(),
            "embedding",
            return_fields=["source", "ts"],
            num_results=3,
            filter_expression=Tag("source") == "cam-a",
        )
        hits = index.query(knn)
        assert hits[0]["id"].endswith("doc4")
        assert float(hits[0]["vector_distance"]) == pytest.approx(0.0, abs=1e-5)
        assert hits[0]["ts"] == "2000"
        assert {hit["source"] for hit in hits} == {"cam-a"}

        in_range = VectorRangeQuery(
            _unit(3).tolist(),
            "embedding",
            return_fields=["source", "ts"],
            distance_threshold=0.01,
            filter_expression=(Tag("source") == "cam-b") & (Num("ts") >= 1003),
        )
        assert [hit["id"].rsplit(":", 1)[-1] for hit in index.query(in_range)] == ["doc3"]
        excluded = VectorRangeQuery(
            _unit(3).tolist(),
            "embedding",
            distance_threshold=0.01,
            filter_expression=Num("ts") > 1003,
        )
        assert index.query(excluded) == []
    finally:
        index.delete(drop=True)


# --- lifecycle -----------------------------------------------------------------------------


def test_status_reports_both_services_healthy(stack: EmbeddedStack) -> None:
    status = stack.status().as_json()

    assert status["kafka"]["bootstrap"] == stack.kafka_bootstrap
    assert status["redis"]["url"] == stack.redis_url
    assert status["kafka"]["healthy"] and status["redis"]["healthy"]
    assert Path(status["kafka"]["log"]).parent == stack.home / "logs"
    assert status["kafka"]["pid"] == stack.pid("kafka")


def test_up_again_reports_already_running(stack: EmbeddedStack) -> None:
    pids = (stack.pid("kafka"), stack.pid("redis"))

    result = stack.up()

    assert result.started == []
    assert sorted(result.already_running) == ["kafka", "redis"]
    assert (stack.pid("kafka"), stack.pid("redis")) == pids


def test_a_second_stack_on_taken_ports_fails_clearly(stack: EmbeddedStack, tmp_path: Path) -> None:
    intruder = EmbeddedStack(
        tmp_path / "other",
        kafka_port=stack.kafka.port,
        controller_port=stack.kafka.controller_port,
        redis_port=stack.redis.port,
    )

    with pytest.raises(PortInUse, match="LOOKOUT_KAFKA_PORT"):
        intruder.up()
    assert intruder.pid("kafka") is None


def test_resolve_services_needs_a_running_embedded_stack(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    running = Settings(
        home=stack.home,
        kafka_port=stack.kafka.port,
        kafka_controller_port=stack.kafka.controller_port,
        redis_port=stack.redis.port,
        kafka_bootstrap=None,
        redis_url=None,
    )
    assert resolve_services(running).kafka_bootstrap == stack.kafka_bootstrap
    assert resolve_services(running).redis_url == stack.redis_url

    stopped = Settings(home=tmp_path / "nothing-here", kafka_bootstrap=None, redis_url=None)
    with pytest.raises(StackNotRunning, match="lookout stack up"):
        resolve_services(stopped)


def test_topic_records_and_index_documents_survive_down_and_up(tmp_path: Path) -> None:
    kafka_port, controller_port, redis_port = free_ports(3)
    own = EmbeddedStack(
        tmp_path / "home",
        kafka_port=kafka_port,
        controller_port=controller_port,
        redis_port=redis_port,
        partitions=1,
    )
    own.up()
    try:
        topic = unique_name("persist")
        records = [(b"src", f"r{i}".encode()) for i in range(5)]
        _produce(own.kafka_bootstrap, topic, records)
        index = _vector_index(own.redis_url, "persist")
        index.load(_docs(6), id_field="id")

        assert sorted(own.down()) == ["kafka", "redis"]
        assert own.pid("kafka") is None and own.pid("redis") is None
        assert sorted(own.up().started) == ["kafka", "redis"]

        assert _read_from_start(own.kafka_bootstrap, topic, len(records)) == records
        from redisvl.index import SearchIndex

        reopened = SearchIndex.from_existing("persist:idx", redis_url=own.redis_url)
        # RediSearch may re-index the loaded hashes in the background after the restart
        assert wait_for(lambda: reopened.info()["num_docs"] == 6, 30), reopened.info()
    finally:
        own.down()


def _lookout(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("lookout")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_cli_up_status_down_from_a_shell(tmp_path: Path) -> None:
    kafka_port, controller_port, redis_port = free_ports(3)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOOKOUT_")} | {
        "LOOKOUT_HOME": str(tmp_path / "home"),
        "LOOKOUT_KAFKA_PORT": str(kafka_port),
        "LOOKOUT_KAFKA_CONTROLLER_PORT": str(controller_port),
        "LOOKOUT_REDIS_PORT": str(redis_port),
    }
    up = _lookout("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{kafka_port}" in up.stdout

        again = _lookout("stack", "up", env=env)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout

        status = _lookout("stack", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert f"127.0.0.1:{kafka_port}" in status.stdout
        assert f"redis://127.0.0.1:{redis_port}" in status.stdout
        assert str(tmp_path / "home" / "logs" / "kafka.log") in status.stdout

        as_json = json.loads(_lookout("stack", "status", "--json", env=env).stdout)
        assert as_json["kafka"]["bootstrap"] == f"127.0.0.1:{kafka_port}"
        assert as_json["kafka"]["healthy"] is True
        assert as_json["redis"]["url"] == f"redis://127.0.0.1:{redis_port}"
        assert as_json["redis"]["healthy"] is True
    finally:
        down = _lookout("stack", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    after = json.loads(_lookout("stack", "status", "--json", env=env).stdout)
    assert after["kafka"]["healthy"] is False and after["kafka"]["pid"] is None
