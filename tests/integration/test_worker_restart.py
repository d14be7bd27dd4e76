"""Worker crashes and restarts: every record ends up indexed exactly once (keys == records)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from encoders.modality import Modality
from tests.helpers import metric_value
from tests.integration.pipeline_records import good_records, item_keys, produce, wait_for_items

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 1500
SMALL_BATCHES = {"LOOKOUT_BATCH_SIZE_LOGS": "4", "LOOKOUT_MAX_WAIT_LOGS_S": "0.05"}


def _produce_slowly(settings, records, chunks: int = 10, pause_s: float = 0.3) -> threading.Thread:
    """A live stream: records arrive in chunks while the test kills and restarts workers."""

    def run() -> None:
        size = len(records) // chunks
        for i in range(chunks):
            produce(settings, records[i * size:(i + 1) * size] if i < chunks - 1
                    else records[i * size:])
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_some(settings, low: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = len(item_keys(settings, Modality.LOGS))
        if count >= low:
            return count
        time.sleep(0.05)
    raise AssertionError(f"fewer than {low} items indexed after {timeout_s}s")


def _metric(worker, name: str) -> float:
    status, text = worker.get("/metrics")
    assert status == 200
    return metric_value(text, name)


def test_sigkill_mid_stream_then_restart_indexes_every_record_once(settings, worker_process):
    records = good_records(Modality.LOGS, N)
    first = worker_process(**SMALL_BATCHES)
    producer = _produce_slowly(settings, records)
    _wait_some(settings, 100)
    first.kill()  # SIGKILL: no commit, no cleanup
    at_kill = len(item_keys(settings, Modality.LOGS))
    producer.join(timeout=60)
    assert at_kill < N, "the stream ended before the kill; nothing was tested"

    second = worker_process(**SMALL_BATCHES)
    counts = wait_for_items(settings, {Modality.LOGS: N})
    time.sleep(1.0)
    keys = item_keys(settings, Modality.LOGS)
    assert len(keys) == N == counts[Modality.LOGS], second.log_tail()
    # At-least-once: the restarted worker consumed everything after the last commit,
    # so together the two workers saw every record.
    assert at_kill + _metric(second, "lookout_records_consumed_total") >= N
    assert second.stop() == 0


def test_sigterm_finishes_the_batch_and_commits_so_a_restart_resumes(settings, worker_process):
    records = good_records(Modality.LOGS, N)
    first = worker_process(**SMALL_BATCHES)
    producer = _produce_slowly(settings, records)
    _wait_some(settings, 100)
    assert first.stop() == 0  # graceful: drain the batch in hand, commit, leave the group
    indexed_by_first = len(item_keys(settings, Modality.LOGS))
    producer.join(timeout=60)
    assert indexed_by_first < N, "the stream ended before the stop; nothing was tested"

    second = worker_process(**SMALL_BATCHES)
    counts = wait_for_items(settings, {Modality.LOGS: N})
    time.sleep(1.0)
    assert len(item_keys(settings, Modality.LOGS)) == N == counts[Modality.LOGS]
    # Offsets were committed up to what the first worker indexed: the second one resumes
    # there instead of starting over.
    assert _metric(second, "lookout_records_consumed_total") == N - indexed_by_first
    assert second.stop() == 0


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test alone, so the test can take it down and bring it back."""
    from streams.embedded import RedisServer
    from tests.helpers import free_port, wait_for

    server = RedisServer(tmp_path / "redis-home", free_port())
    proc = server.process(tmp_path / "pids", tmp_path / "logs")

    def start() -> None:
        server.start(proc)
        assert wait_for(server.is_ready, timeout_s=30), proc.log_tail()

    start()
    yield SimpleNamespace(url=server.url, start=start, stop=lambda: proc.stop(timeout_s=10))
    proc.stop(timeout_s=10)


def test_redis_outage_pauses_the_worker_and_loses_nothing(settings, worker_process,
                                                          private_redis):
    settings = settings.model_copy(update={"redis_url": private_redis.url})
    n = 400
    records = good_records(Modality.LOGS, n)
    worker = worker_process(LOOKOUT_REDIS_URL=private_redis.url, **SMALL_BATCHES)
    produce(settings, records[: n // 2])
    assert wait_for_items(settings, {Modality.LOGS: n // 2})[Modality.LOGS] == n // 2

    private_redis.stop()  # outage (AOF keeps what was written)
    produce(settings, records[n // 2:])
    deadline = time.monotonic() + 30
    while "pausing and retrying" not in worker.log_tail(200) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "pausing and retrying" in worker.log_tail(200)
    assert worker.get("/healthz")[0] == 200  # alive while it waits
    private_redis.start()

    counts = wait_for_items(settings, {Modality.LOGS: n})
    time.sleep(1.0)
    assert len(item_keys(settings, Modality.LOGS)) == n == counts[Modality.LOGS]
    assert _metric(worker, "lookout_redis_retries_total") >= 1
    assert worker.stop() == 0
