"""`/readyz` follows Kafka: a worker whose Kafka goes away answers 503 naming Kafka (and
stays alive on `/healthz`), and is ready again once Kafka is back."""

from __future__ import annotations

import pytest

from streams.config.settings import Settings
from streams.embedded import EmbeddedStack
from tests.helpers import free_ports, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def private_kafka(tmp_path, settings: Settings):
    """A Kafka of this test alone (the session's Redis), so the test can stop it."""
    kafka_port, controller_port = free_ports(2)
    stack = EmbeddedStack(tmp_path / "kafka-home", kafka_port, controller_port,
                          kafka_version=settings.kafka_version, partitions=1,
                          with_redis=False)
    stack.up()
    yield stack
    stack.down()


def test_readyz_is_503_while_kafka_is_down_and_200_when_it_is_back(
        settings: Settings, worker_process, private_kafka: EmbeddedStack):
    worker = worker_process(LOOKOUT_KAFKA_BOOTSTRAP=private_kafka.kafka_bootstrap)
    assert worker.get("/readyz")[0] == 200

    private_kafka.down()
    assert wait_for(lambda: worker.get("/readyz")[0] == 503, timeout_s=30), worker.log_tail()
    status, body = worker.get("/readyz")
    assert status == 503 and not body["ready"], body
    assert any(m.startswith("Kafka is unreachable") for m in body["missing"]), body
    assert worker.get("/healthz")[0] == 200  # alive: an orchestrator must not restart it

    private_kafka.up()
    assert wait_for(lambda: worker.get("/readyz")[0] == 200, timeout_s=60), (
        worker.get("/readyz"), worker.log_tail())
    assert worker.stop() == 0
