"""Worker crashes and restarts: no record is lost (keys == records), and every upsert is
accounted for from the workers' own counters and the group's committed offsets.

Delivery is at-least-once: after a kill -9 the records upserted but not yet committed are
consumed and upserted again by the next worker. The tests compute that number (keys at the
kill minus the committed offset) instead of pretending it is zero.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from encoders.modality import Modality
from streams.core.wire import item_key
from tests.helpers import metric_value, wait_for
from tests.integration.pipeline_records import item_keys, produce, trivial_space
from tests.integration.progress import committed_and_end, wait_until_processed
from tests.records import good_records

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


def _committed(settings) -> int:
    """The group's committed offset on the logs topic, once the whole stream is on it."""
    committed, end = committed_and_end(settings, settings.worker_id,
                                       settings.input_topic(Modality.LOGS))
    assert end == N, f"the producer did not finish: {end} of {N} records on the topic"
    return committed


def test_sigkill_mid_stream_then_restart_loses_nothing(settings, worker_process):
    records = good_records(Modality.LOGS, N)
    first = worker_process(**SMALL_BATCHES)
    producer = _produce_slowly(settings, records)
    _wait_some(settings, 100)
    first.kill()  # SIGKILL: no commit, no cleanup; its counters die with it
    keys_at_kill = item_keys(settings, Modality.LOGS)  # what the first worker upserted
    at_kill = len(keys_at_kill)
    producer.join(timeout=60)
    assert not producer.is_alive()
    assert at_kill < N, "the stream ended before the kill; nothing was tested"
    # No worker runs now: this is where the next one resumes. Offsets are committed only
    # after a batch is in Redis, so the commit can lag the keys but never lead them.
    committed = _committed(settings)
    assert committed <= at_kill, (committed, at_kill)
    # One partition, batches in order: the first worker's keys are offsets 0 .. at_kill-1.
    topic = settings.input_topic(Modality.LOGS)
    space = trivial_space(Modality.LOGS)
    assert keys_at_kill == {item_key(Modality.LOGS, topic, 0, off, prefix=settings.topic_prefix,
                                     space=space) for off in range(at_kill)}
    redelivered = at_kill - committed  # upserted by the first worker, not yet committed

    second = worker_process(**SMALL_BATCHES)
    done = wait_until_processed(settings, [second], {Modality.LOGS: N - committed})
    # The second worker resumes exactly at the commit: it consumes and upserts every record
    # from there once (no gap, so nothing lost; nothing it skips or repeats itself).
    assert done.consumed[Modality.LOGS] == N - committed, (done, committed, second.log_tail())
    assert done.indexed[Modality.LOGS] == N - committed, (done, committed, second.log_tail())
    assert len(item_keys(settings, Modality.LOGS)) == N, second.log_tail()
    # So the second worker re-upserted exactly the `redelivered` records (offsets committed
    # .. at_kill-1) the first had already upserted: at-least-once, bounded by the commit lag.
    # Upserts in all: the first worker's (at least `at_kill`, one per key it left; its
    # counter cannot be read after kill -9, so an extra upsert of its own would go unseen)
    # plus the second's, i.e. at least N + redelivered.
    total_at_least = at_kill + done.indexed[Modality.LOGS]
    print(f"\nSIGKILL at {at_kill} indexed, committed {committed}: {redelivered} records "
          f"re-upserted after the restart ({total_at_least} upserts for {N} records)")
    assert second.stop() == 0


def test_sigterm_finishes_the_batch_and_commits_so_a_restart_resumes(settings, worker_process):
    records = good_records(Modality.LOGS, N)
    first = worker_process(**SMALL_BATCHES)
    producer = _produce_slowly(settings, records)
    _wait_some(settings, 100)
    assert first.stop() == 0  # graceful: drain the batch in hand, commit, leave the group
    indexed_by_first = len(item_keys(settings, Modality.LOGS))
    producer.join(timeout=60)
    assert not producer.is_alive()
    assert indexed_by_first < N, "the stream ended before the stop; nothing was tested"
    # Offsets were committed up to exactly what the first worker indexed: nothing in Redis
    # is left uncommitted (so nothing will be upserted twice) and nothing unindexed committed.
    assert _committed(settings) == indexed_by_first

    second = worker_process(**SMALL_BATCHES)
    done = wait_until_processed(settings, [second], {Modality.LOGS: N - indexed_by_first})
    # The second one resumes there instead of starting over: it consumes and upserts only
    # the rest, each record once. (The first worker's own upsert counter is gone with its
    # process; its share is the `indexed_by_first` keys it left, each one upsert unless it
    # repeated one itself, which these counters cannot see.)
    assert done.consumed[Modality.LOGS] == N - indexed_by_first, (done, second.log_tail())
    assert done.indexed[Modality.LOGS] == N - indexed_by_first, (done, second.log_tail())
    assert len(item_keys(settings, Modality.LOGS)) == N
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
    done = wait_until_processed(settings, [worker], {Modality.LOGS: n // 2})
    assert done.indexed[Modality.LOGS] == n // 2, (done, worker.log_tail())

    private_redis.stop()  # outage (AOF keeps what was written)
    produce(settings, records[n // 2:])
    deadline = time.monotonic() + 30
    while "pausing and retrying" not in worker.log_tail(200) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "pausing and retrying" in worker.log_tail(200)
    assert worker.get("/healthz")[0] == 200  # alive while it waits
    assert wait_for(lambda: worker.get("/readyz")[0] == 503, timeout_s=30)
    assert any(m.startswith("Redis is unreachable")
               for m in worker.get("/readyz")[1]["missing"]), worker.get("/readyz")
    private_redis.start()

    # No crash, so no redelivery: each record consumed once and upserted once (a batch
    # retried through the outage counts once, when Redis took it), none lost.
    done = wait_until_processed(settings, [worker], {Modality.LOGS: n})
    assert done.consumed[Modality.LOGS] == done.indexed[Modality.LOGS] == n, (
        done, worker.log_tail())
    assert len(item_keys(settings, Modality.LOGS)) == n
    assert _metric(worker, "lookout_redis_retries_total") >= 1
    assert wait_for(lambda: worker.get("/readyz")[0] == 200, timeout_s=30), worker.get("/readyz")
    assert worker.stop() == 0
