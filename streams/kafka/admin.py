"""Kafka admin work, one path for all of it: create topics when missing (input, dead-letter,
queries, alerts), and read a topic with a group-less consumer that sees every partition.

One client (aiokafka) for admin work; synchronous callers (producers, demo, benchmarks) use
`ensure_topics_sync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidReplicationFactorError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from streams.config.settings import Settings
from streams.core.errors import LookoutError


class TopicSetupError(LookoutError):
    """A topic could not be listed or created; check the Kafka bootstrap address."""


@dataclasses.dataclass(frozen=True)
class TopicLayout:
    """How Lookout creates the topics it needs (`LOOKOUT_PARTITIONS`,
    `LOOKOUT_REPLICATION_FACTOR`, `LOOKOUT_MIN_INSYNC_REPLICAS`).

    Replication 1 fits the embedded single broker; a production cluster wants 3 with
    min.insync.replicas 2, so that the compacted queries topic (the only copy of the
    standing queries) and every input record survive the loss of a broker. Producers
    already send with acks=all, which is what makes min.insync.replicas bite.
    """

    partitions: int
    replication: int = 1
    min_insync_replicas: int | None = None

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication < 1:
            raise ValueError("partitions and replication must be at least 1")
        if self.min_insync_replicas is not None and not (
                1 <= self.min_insync_replicas <= self.replication):
            raise ValueError(
                f"min.insync.replicas {self.min_insync_replicas} must be between 1 and the "
                f"replication factor {self.replication}")

    def single_partition(self) -> TopicLayout:
        """The same replication for a one-partition topic (the compacted queries topic)."""
        return dataclasses.replace(self, partitions=1)

    def topic_configs(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        configs = dict(extra or {})
        if self.min_insync_replicas is not None:
            configs.setdefault("min.insync.replicas", str(self.min_insync_replicas))
        return configs


def topic_layout(settings: Settings) -> TopicLayout:
    """The layout the settings ask for."""
    return TopicLayout(settings.partitions, settings.replication_factor,
                       settings.min_insync_replicas)


async def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    layout: TopicLayout,
    client_kwargs: Mapping[str, Any] | None = None,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the missing ones of `topics` with `layout`; returns those it created.
    Existing topics are left as they are, whatever their partitions and replication.

    `client_kwargs` carries TLS/SASL settings (`kafka_security.aiokafka_kwargs`).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **dict(client_kwargs or {}))
    missing: list[str] = list(topics)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            await _create(admin, missing, layout, layout.topic_configs(configs))
        return missing
    except KafkaError as e:
        raise TopicSetupError(
            f"cannot create topics {', '.join(missing)} at {bootstrap}: {e} (is Kafka running? "
            "start it with `lookout stack up` or set LOOKOUT_KAFKA_BOOTSTRAP)") from e
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topics: list[str], layout: TopicLayout,
                  configs: dict[str, str]) -> None:
    """CreateTopics reports per-topic errors in its response instead of raising: read them,
    so that a refused topic (too few brokers for the replication, a bad config) is a clear
    error at start instead of a worker that waits for a topic that never comes."""
    new = [NewTopic(t, layout.partitions, layout.replication, topic_configs=configs)
           for t in topics]
    response = await admin.create_topics(new)
    for topic, code, *message in getattr(response, "topic_errors", ()):
        if code in (0, TopicAlreadyExistsError.errno):  # created, or someone was quicker
            continue
        reason = (message[0] if message else None) or for_code(code).__name__
        hint = (" (set LOOKOUT_REPLICATION_FACTOR to at most the number of brokers)"
                if code == InvalidReplicationFactorError.errno else "")
        raise TopicSetupError(
            f"cannot create topic {topic} ({layout.partitions} partitions, replication "
            f"{layout.replication}, configs {configs or '{}'}): {reason}{hint}")


async def ensure_topic(
    bootstrap: str,
    topic: str,
    layout: TopicLayout,
    client_kwargs: Mapping[str, Any] | None = None,
    **configs: str,
) -> None:
    """`ensure_topics` for one topic with its topic configs (e.g. cleanup.policy=compact)."""
    await ensure_topics(bootstrap, [topic], layout, client_kwargs, configs)


def ensure_topics_sync(
    bootstrap: str, topics: Sequence[str], layout: TopicLayout,
    client_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """`ensure_topics` for code without an event loop (the CLI producer, demo, benchmarks)."""
    return asyncio.run(ensure_topics(bootstrap, topics, layout, client_kwargs))


def committed_offsets(
    bootstrap: str, topics: Iterable[str], group: str,
    client_kwargs: Mapping[str, Any] | None = None,
) -> dict[tuple[str, int], tuple[int, int]]:
    """(committed offset of `group`, log end offset) per (topic, partition) of `topics`; 0
    where the group never committed. A worker commits a batch only after its items are
    upserted and its alerts published, so "committed to the end" means "done with all of it",
    which the counters alone cannot say (they count a batch indexed before it matches)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group,
                             enable_auto_commit=False, client_id="lookout-offsets",
                             **dict(client_kwargs or {}))
    try:
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(parts) if parts else {}
        return {(tp.topic, tp.partition): (consumer.committed(tp) or 0, ends[tp])
                for tp in parts}
    finally:
        consumer.close()


async def all_partitions(consumer: Any, topic: str, attempts: int = 50) -> list[Any]:
    """Every partition of `topic` for a group-less consumer (waits for its metadata)."""
    from aiokafka import TopicPartition

    for _ in range(attempts):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        await consumer._client.force_metadata_update()  # noqa: SLF001
        if not consumer.partitions_for_topic(topic):  # usually there after one update
            await asyncio.sleep(0.1)
    raise TopicSetupError(f"topic {topic} has no partitions in the cluster metadata")


async def assigned_consumer(
    bootstrap: str, topic: str, client_kwargs: dict[str, Any] | None = None, **consumer_kwargs: Any
) -> tuple[Any, dict[Any, int]]:
    """A started group-less consumer assigned every partition of `topic`, and each
    partition's end offset just before (its keys are the partitions); the caller seeks
    where it wants to start and stops the consumer.

    The ends are read before assigning: an assigned consumer long-polls the broker
    (`fetch_max_wait_ms`, 500 ms), and a ListOffsets request on the same connection waits
    behind that poll; asked afterwards, they cost half a second of every worker's start."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        **(client_kwargs or {}), **consumer_kwargs,
    )
    await consumer.start()
    try:
        tps = await all_partitions(consumer, topic)
        ends = await consumer.end_offsets(tps)
    except BaseException:
        await consumer.stop()
        raise
    consumer.assign(tps)
    return consumer, {tp: ends[tp] for tp in tps}


CLOSED = "the topic-id client is closed (the worker is stopping)"


class TopicIds:
    """Kafka's topic id (KIP-516: a UUID per topic incarnation, new when a topic is deleted
    and created again) of each existing one of `topics`: `await ids(topics)`.

    One admin client, kept open: a new one per lookup cost the first matching batch of every
    worker (and the first after each restart) ~350 ms of import, bootstrap and API version
    probes before its alerts went out, where a lookup on an open client is one round trip.
    `connect()` pays that once the worker is ready, off the critical path. After an error
    the client is dropped and the next lookup connects again (Kafka restarted, say).

    The lock guards only opening and swapping the client: lookups run on it side by side
    (kafka-python's network loop takes concurrent callers), so one waiting out an outage
    does not queue the others behind it, and `close()` never waits for a lookup.

    kafka-python, not aiokafka: aiokafka's metadata request predates topic ids. So
    `client_kwargs` are `kafka_security.kafka_python_kwargs`; calls run in a thread.
    """

    #: Shorter than kafka-python's 30 s: a lookup that cannot finish is retried by the
    #: pipeline anyway, and a stuck one holds an executor thread meanwhile.
    TIMEOUTS_MS = {"bootstrap_timeout_ms": 5_000, "request_timeout_ms": 10_000}

    def __init__(self, bootstrap: str, client_kwargs: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self._kwargs = self.TIMEOUTS_MS | dict(client_kwargs or {})
        self._admin: Any = None
        self._closed = False
        self._lock = threading.Lock()

    async def __call__(self, topics: Sequence[str]) -> dict[str, str]:
        try:
            return await asyncio.to_thread(self._describe, list(topics))
        except Exception as e:  # kafka-python raises KafkaError, OSError, ValueError
            raise TopicSetupError(f"cannot read the topic ids of {', '.join(topics)} at "
                                  f"{self.bootstrap}: {e}") from e

    async def connect(self) -> None:
        """Open the client now (imports and bootstrap), so the first lookup is quick."""
        try:
            await asyncio.to_thread(self._client)
        except Exception as e:
            raise TopicSetupError(f"cannot connect to {self.bootstrap} for topic ids: "
                                  f"{e}") from e

    def close(self) -> None:
        """Close the client; a lookup still running on it fails, and none opens another."""
        self._closed = True
        self._drop(self._admin)

    def _client(self) -> Any:
        """The open client, or a new one (bootstrapped outside the lock: two first lookups
        at once may both connect, and the second keeps the first's)."""
        with self._lock:
            if self._closed:
                raise TopicSetupError(CLOSED)
            if self._admin is not None:
                return self._admin
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                 client_id="lookout-topic-ids", **self._kwargs)
        with self._lock:
            if self._admin is None and not self._closed:
                self._admin = admin
            winner = None if self._closed else self._admin
        if winner is not admin:
            self._close(admin)
        if winner is None:
            raise TopicSetupError(CLOSED)
        return winner

    def _drop(self, admin: Any) -> None:
        """Forget `admin` if it is still the open client (another lookup may have replaced
        it already), and close it."""
        with self._lock:
            if self._admin is admin:
                self._admin = None
        self._close(admin)

    @staticmethod
    def _close(admin: Any) -> None:
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()

    def _describe(self, topics: list[str]) -> dict[str, str]:
        admin = self._client()
        try:
            described = admin.describe_topics(topics)
        except Exception:
            self._drop(admin)
            raise
        return {t["name"]: str(t["topic_id"]) for t in described
                if t.get("topic_id") and not t.get("error_code")}
