"""How Lookout creates topics: partitions, replication and min.insync.replicas."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.config.settings import Settings
from streams.kafka.admin import TopicLayout, topic_layout


def test_the_embedded_default_is_one_replica_and_the_brokers_min_insync() -> None:
    layout = topic_layout(Settings())
    assert (layout.replication, layout.min_insync_replicas) == (1, None)
    assert layout.topic_configs() == {}


def test_production_settings_reach_every_topic_config() -> None:
    layout = topic_layout(Settings(partitions=8, replication_factor=3, min_insync_replicas=2))
    assert (layout.partitions, layout.replication) == (8, 3)
    assert layout.topic_configs({"cleanup.policy": "compact"}) == {
        "cleanup.policy": "compact", "min.insync.replicas": "2"}


def test_the_queries_topic_keeps_the_replication_with_one_partition() -> None:
    layout = TopicLayout(8, 3, 2).single_partition()
    assert (layout.partitions, layout.replication, layout.min_insync_replicas) == (1, 3, 2)


def test_min_insync_above_the_replication_is_refused_before_any_write() -> None:
    with pytest.raises(ValidationError, match="every write would be refused"):
        Settings(replication_factor=1, min_insync_replicas=2)
    with pytest.raises(ValueError, match="between 1 and the replication factor"):
        TopicLayout(1, 2, 3)
