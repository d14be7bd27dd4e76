"""`GET /status` shows the whole worker group, from the heartbeats the workers keep in
Redis: two real workers in one consumer group on the embedded stack each list both, count
what both did in the last hour, and a killed one disappears after its heartbeat's TTL."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from encoders.modality import Modality
from streams.config.settings import Settings
from tests.helpers import wait_for
from tests.integration.pipeline_records import produce
from tests.integration.worker_fixtures import SpawnedWorker, started_together
from tests.records import bad_records, good_records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BEAT_S = 1.0  # LOOKOUT_STATUS_INTERVAL_S: the heartbeat TTL is 3 beats


def _group(worker: SpawnedWorker) -> dict[str, Any]:
    status, body = worker.get("/status")
    assert status == 200, body
    return body


def _instances(worker: SpawnedWorker) -> set[str]:
    return {w["instance"] for w in _group(worker)["workers"]}


def _port(worker: SpawnedWorker) -> str:
    return worker.api_url.rsplit(":", 1)[1]


def _settled(worker: SpawnedWorker, ports: set[str]) -> bool:
    listed = _group(worker)["workers"]
    return ({w["instance"].rsplit(":", 1)[1] for w in listed} == ports
            and all(w["ready"] and w["assigned_partitions"] > 0 for w in listed)
            and sum(w["assigned_partitions"] for w in listed) == 6)


def _deadletters(workers: list[SpawnedWorker]) -> dict[str, dict[str, int]]:
    """modality -> reason -> dead letters, summed over the workers' own /metrics."""
    out: dict[str, dict[str, int]] = {}
    for worker in workers:
        for family in text_string_to_metric_families(worker.metrics_text()):
            for s in family.samples:
                if s.name == "lookout_deadletters_total" and s.value:
                    by_reason = out.setdefault(s.labels["modality"], {})
                    reason = s.labels["reason"]
                    by_reason[reason] = by_reason.get(reason, 0) + int(s.value)
    return out


def test_each_worker_shows_the_whole_group_and_a_dead_one_leaves_after_its_ttl(
        worker_process: Any, settings: Settings) -> None:
    env = {"LOOKOUT_STATUS_INTERVAL_S": str(BEAT_S), "LOOKOUT_PARTITIONS": "2"}
    a, b = started_together(worker_process, 2, **env)
    ports = {_port(a), _port(b)}
    # Settled: each worker lists both, both ready, and their beats agree on the split of the
    # 6 partitions (3 topics x 2). Right after the rebalance one beat may still carry the
    # count from before it (the first worker held all 6 for a moment), for up to one beat.
    for worker in (a, b):
        assert wait_for(lambda w=worker: _settled(w, ports), 60), _group(worker)
    group = _group(a)
    assert {w["group"] for w in group["workers"]} == {settings.worker_id}
    assert group["heartbeat_ttl_s"] == 3 * BEAT_S
    for w in group["workers"]:
        assert set(w["encoders"]) == {"video", "audio", "logs"}
        assert w["started_at"] <= w["last_seen"]

    produce(settings, good_records(Modality.LOGS, 8) + bad_records())
    assert wait_for(lambda: sum(sum(r.values()) for r in _deadletters([a, b]).values())
                    == len(bad_records()), 60), _deadletters([a, b])
    expected = _deadletters([a, b])

    def counted(w: SpawnedWorker) -> bool:
        mods = _group(w)["modalities"]
        return mods["logs"]["indexed_last_hour"] == 8 and all(
            mods[m]["deadletters_last_hour"] == expected.get(m, {}) for m in mods)

    assert wait_for(lambda: counted(a) and counted(b), 30), (_group(a), expected)

    b.kill()
    killed_at = time.monotonic()
    assert wait_for(lambda: {i.rsplit(":", 1)[1] for i in _instances(a)} == {_port(a)}, 30)
    gone_after_s = time.monotonic() - killed_at
    assert gone_after_s <= 3 * BEAT_S + 5, gone_after_s
    print(f"a killed worker left the group's status after {gone_after_s:.1f} s")


def test_a_worker_that_stops_leaves_the_group_at_once(worker_process: Any) -> None:
    env = {"LOOKOUT_STATUS_INTERVAL_S": "30"}  # TTL 90 s: only the removal can explain it
    a, b = started_together(worker_process, 2, **env)
    assert wait_for(lambda: len(_instances(a)) == 2, 60), _group(a)
    assert b.stop() == 0
    assert {i.rsplit(":", 1)[1] for i in _instances(a)} == {_port(a)}
