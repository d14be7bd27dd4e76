"""Integration fixtures: one real embedded Kafka + Redis per test session, unique names per test.

Registered once for the whole suite (tests/conftest.py's `pytest_plugins`), so
tests/integration and tests/faults share one session stack instead of starting a Kafka
each.

The session stack runs on free ports in a temporary home and is stopped at the end.
Set `LOOKOUT_TEST_HOME=/some/dir` to reuse a long-lived stack there instead (started if
needed, left running; ports from LOOKOUT_KAFKA_PORT / LOOKOUT_KAFKA_CONTROLLER_PORT /
LOOKOUT_REDIS_PORT or their defaults): handy when iterating on one test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config.settings import Settings
from streams.embedded import EmbeddedStack
from tests.helpers import free_ports, unique_name


def _reused_stack(home: Path) -> EmbeddedStack:
    base = Settings(home=home, kafka_bootstrap=None, redis_url=None)
    return EmbeddedStack.from_settings(base)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """A running embedded stack (real Kafka KRaft node + Redis with RediSearch)."""
    reuse_home = os.environ.get("LOOKOUT_TEST_HOME")
    if reuse_home:
        reused = _reused_stack(Path(reuse_home))
        reused.up()
        yield reused
        return
    kafka_port, controller_port, redis_port = free_ports(3)
    session_stack = EmbeddedStack(
        tmp_path_factory.mktemp("lookout-home"),
        kafka_port=kafka_port,
        controller_port=controller_port,
        redis_port=redis_port,
        kafka_version=Settings.model_fields["kafka_version"].default,
        partitions=1,
    )
    session_stack.up()
    try:
        yield session_stack
    finally:
        session_stack.down()


@pytest.fixture
def settings(stack: EmbeddedStack) -> Settings:
    """Settings pointing at the session stack, with a topic prefix and worker id of its own."""
    name = unique_name("t")
    return Settings(
        home=stack.home,
        kafka_bootstrap=stack.kafka_bootstrap,
        redis_url=stack.redis_url,
        kafka_port=stack.kafka.port,
        kafka_controller_port=stack.kafka.controller_port,
        redis_port=stack.redis.port,
        topic_prefix=name,
        worker_id=f"{name}-worker",
        partitions=1,
    )
