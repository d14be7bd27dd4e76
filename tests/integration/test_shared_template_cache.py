"""A restarted worker takes the log templates its group already embedded from Redis
instead of computing them again (the MiniLM log encoder, a real worker, real Redis)."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from encoders.modality import Modality
from streams.index.vector_cache import vector_cache_prefix
from tests.helpers import metric_value
from tests.integration.alerting_helpers import produce_logs
from tests.integration.progress import wait_until_processed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TEMPLATES = ("disk {} percent full on volume data", "user {} logged in from the vpn",
             "payment {} declined by the card issuer")
MINILM = {"LOOKOUT_ENCODER_LOGS": "minilm", "LOOKOUT_BATCH_SIZE_LOGS": "1"}


def _lines(round_: int) -> list[tuple[str, str]]:
    return [(f"app-{i}", t.format(1000 * round_ + i)) for i, t in enumerate(TEMPLATES)]


def _cache_counts(worker) -> dict[str, float]:
    status, text = worker.get("/metrics")
    assert status == 200
    return {result: metric_value(text, "lookout_log_template_cache_total",
                                 f'modality="logs",result="{result}"')
            for result in ("local", "shared", "computed")}


def _shared_keys(settings) -> list[bytes]:
    client = redis.Redis.from_url(settings.resolved_redis_url())
    try:
        return list(client.scan_iter(match=vector_cache_prefix(settings.topic_prefix, "*")
                                     + "*", count=1000))
    finally:
        client.close()


def test_a_restarted_worker_takes_its_groups_templates_from_redis(settings, worker_process):
    first = worker_process(**MINILM)
    produce_logs(settings, _lines(1))  # each template once: nothing shared yet
    wait_until_processed(settings, [first], {Modality.LOGS: 3})
    assert _shared_keys(settings) == []
    produce_logs(settings, _lines(2))  # their second sighting: shared now
    wait_until_processed(settings, [first], {Modality.LOGS: 6})
    assert _cache_counts(first) == {"local": 3, "shared": 0, "computed": 3}
    keys = _shared_keys(settings)
    assert len(keys) == 3
    client = redis.Redis.from_url(settings.resolved_redis_url())
    vector = np.frombuffer(client.get(keys[0]), dtype=np.float32)
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert 0 < client.ttl(keys[0]) <= 7 * 24 * 3600
    client.close()
    assert first.stop() == 0

    second = worker_process(**MINILM)
    produce_logs(settings, _lines(3))
    done = wait_until_processed(settings, [second], {Modality.LOGS: 3})
    assert done.indexed[Modality.LOGS] == 3
    assert _cache_counts(second) == {"local": 0, "shared": 3, "computed": 0}


def test_with_sharing_off_nothing_is_written_to_redis(settings, worker_process):
    worker = worker_process(**MINILM, LOOKOUT_LOG_CACHE_SHARED="false")
    for round_ in (1, 2):
        produce_logs(settings, _lines(round_))
    wait_until_processed(settings, [worker], {Modality.LOGS: 6})
    assert _cache_counts(worker) == {"local": 3, "shared": 0, "computed": 3}
    assert _shared_keys(settings) == []
