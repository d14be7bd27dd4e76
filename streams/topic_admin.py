"""Topics the alerting side owns (queries, alerts): create them when missing, and read
them with group-less consumers that see every partition."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.errors import LookoutError


class TopicSetupError(LookoutError):
    """A topic could not be listed or created; check the Kafka bootstrap address."""


async def ensure_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    client_kwargs: dict[str, Any] | None = None,
    **configs: str,
) -> None:
    """Create `topic` when missing (replication 1 fits the embedded broker).

    `client_kwargs` carries TLS/SASL settings (`kafka_security.aiokafka_kwargs`).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_kwargs or {}))
    try:
        await admin.start()
        if topic in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs)])
    except KafkaError as e:
        raise TopicSetupError(f"cannot create topic {topic} at {bootstrap}: {e}") from e
    finally:
        await admin.close()


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
