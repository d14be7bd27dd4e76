"""Topic creation on the real broker: the layout from the settings, and a clear error when
the cluster cannot honour it."""

from __future__ import annotations

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streams.config.settings import Settings
from streams.kafka.admin import TopicLayout, TopicSetupError, ensure_topics_sync, topic_layout

pytestmark = pytest.mark.integration


def _describe(settings: Settings, topic: str) -> tuple[int, int, dict[str, str]]:
    admin = KafkaAdminClient(bootstrap_servers=settings.resolved_kafka_bootstrap())
    try:
        meta = admin.describe_topics([topic])[0]
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    (per_name,) = res.values()
    configs = {k: v["value"] if isinstance(v, dict) else v for k, v in per_name[topic].items()}
    parts = meta["partitions"]
    return len(parts), len(parts[0].get("replicas", parts[0].get("replica_nodes", ()))), configs


def test_topics_are_created_with_the_settings_layout(settings: Settings) -> None:
    wanted = settings.model_copy(update={"partitions": 3, "min_insync_replicas": 1})
    topic = wanted.topic("layout")
    assert ensure_topics_sync(wanted.resolved_kafka_bootstrap(), [topic],
                              topic_layout(wanted)) == [topic]
    partitions, replicas, configs = _describe(wanted, topic)
    assert (partitions, replicas) == (3, 1)
    assert configs["min.insync.replicas"] == "1"
    # a second call leaves the existing topic alone
    assert ensure_topics_sync(wanted.resolved_kafka_bootstrap(), [topic],
                              TopicLayout(5)) == []


def test_more_replicas_than_brokers_is_one_clear_error(settings: Settings) -> None:
    topic = settings.topic("replicated")
    with pytest.raises(TopicSetupError, match="replication 3.*LOOKOUT_REPLICATION_FACTOR"):
        ensure_topics_sync(settings.resolved_kafka_bootstrap(), [topic], TopicLayout(1, 3))
