"""Kafka admin work, one path for all of it: create topics when missing (input, dead-letter,
queries, alerts), and read a topic with a group-less consumer that sees every partition.

One client (aiokafka) for admin work; synchronous callers (producers, demo, benchmarks) use
`ensure_topics_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.core.errors import LookoutError


class TopicSetupError(LookoutError):
    """A topic could not be listed or created; check the Kafka bootstrap address."""


async def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    client_kwargs: Mapping[str, Any] | None = None,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the missing ones of `topics` (replication 1 fits the embedded broker); returns
    those it created. Existing topics are left as they are, whatever their partitions.

    `client_kwargs` carries TLS/SASL settings (`kafka_security.aiokafka_kwargs`).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **dict(client_kwargs or {}))
    missing: list[str] = list(topics)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # someone else was quicker
                await admin.create_topics(
                    [NewTopic(t, partitions, 1, topic_configs=dict(configs or {}))
                     for t in missing])
        return missing
    except KafkaError as e:
        raise TopicSetupError(
            f"cannot create topics {', '.join(missing)} at {bootstrap}: {e} (is Kafka running? "
            "start it with `lookout stack up` or set LOOKOUT_KAFKA_BOOTSTRAP)") from e
    finally:
        await admin.close()


async def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    client_kwargs: Mapping[str, Any] | None = None,
    **configs: str,
) -> None:
    """`ensure_topics` for one topic with its topic configs (e.g. cleanup.policy=compact)."""
    await ensure_topics(bootstrap, [topic], partitions, client_kwargs, configs)


def ensure_topics_sync(
    bootstrap: str, topics: Sequence[str], partitions: int,
    client_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """`ensure_topics` for code without an event loop (the CLI producer, demo, benchmarks)."""
    return asyncio.run(ensure_topics(bootstrap, topics, partitions, client_kwargs))


async def all_partitions(consumer: Any, topic: str, attempts: int = 50) -> list[Any]:
    """Every partition of `topic` for a group-less consumer (waits for its metadata)."""
    from aiokafka import TopicPartition

    for _ in range(attempts):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await consumer._client.force_metadata_update()  # noqa: SLF001
        await asyncio.sleep(0.1)
    raise TopicSetupError(f"topic {topic} has no partitions in the cluster metadata")


async def assigned_consumer(
    bootstrap: str, topic: str, client_kwargs: dict[str, Any] | None = None, **consumer_kwargs: Any
) -> tuple[Any, list[Any]]:
    """A started group-less consumer assigned every partition of `topic`, and those
    partitions; the caller seeks where it wants to start and stops the consumer."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        **(client_kwargs or {}), **consumer_kwargs,
    )
    await consumer.start()
    try:
        tps = await all_partitions(consumer, topic)
    except BaseException:
        await consumer.stop()
        raise
    consumer.assign(tps)
    return consumer, tps


def _topic_ids_sync(bootstrap: str, topics: Sequence[str],
                    client_kwargs: Mapping[str, Any]) -> dict[str, str]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lookout-topic-ids",
                             **dict(client_kwargs))
    try:
        described = admin.describe_topics(list(topics))
    finally:
        admin.close()
    return {t["name"]: str(t["topic_id"]) for t in described
            if t.get("topic_id") and not t.get("error_code")}


async def topic_ids(
    bootstrap: str, topics: Sequence[str], client_kwargs: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Kafka's topic id (KIP-516: a UUID per topic incarnation, new when a topic is deleted
    and created again) of each existing one of `topics`.

    kafka-python, not aiokafka: aiokafka's metadata request predates topic ids. So
    `client_kwargs` are `kafka_security.kafka_python_kwargs`; runs in a thread.
    """
    try:
        return await asyncio.to_thread(_topic_ids_sync, bootstrap, topics, client_kwargs or {})
    except Exception as e:  # kafka-python raises KafkaError, OSError, ValueError
        raise TopicSetupError(f"cannot read the topic ids of {', '.join(topics)} at "
                              f"{bootstrap}: {e}") from e
