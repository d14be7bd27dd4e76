"""End to end through a real worker: Kafka in, Redis vector index and dead letters out."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest
from redis.asyncio import Redis

from encoders.modality import MODALITIES, Modality
from streams.config.settings import Settings
from streams.core.wire import (
    HEADER_ERROR,
    HEADER_ORIGIN_OFFSET,
    HEADER_ORIGIN_TOPIC,
    encode_headers,
    item_key,
)
from streams.index.store import IndexStore
from tests.helpers import metric_value
from tests.integration.pipeline_records import item_keys, produce, read_to_end, trivial_space
from tests.integration.progress import wait_until_processed
from tests.integration.worker_fixtures import started_together
from tests.records import BASE_TS_MS, InputRecord, bad_records, good_records, log_line

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 100  # per modality


async def _stored(settings: Settings, key: str) -> dict[bytes, bytes]:
    client = Redis.from_url(settings.resolved_redis_url())
    try:
        return await client.hgetall(key)
    finally:
        await client.aclose()


async def _ttl(settings: Settings, key: str) -> int:
    client = Redis.from_url(settings.resolved_redis_url())
    try:
        return await client.ttl(key)
    finally:
        await client.aclose()


async def _knn_own_vector(settings: Settings, modality: Modality, key: str) -> list[str]:
    client = Redis.from_url(settings.resolved_redis_url())
    try:
        raw = await client.hgetall(key)
        vector = np.frombuffer(raw[b"embedding"], dtype=np.float32)
        store = IndexStore(client, prefix=settings.topic_prefix, modality=modality,
                           model_short_id=raw[b"model"].decode(), dims=vector.shape[0])
        hits = await store.knn(vector, k=3)
        assert hits and hits[0].score == pytest.approx(1.0, abs=1e-3)
        return [h.key for h in hits]
    finally:
        await client.aclose()


def test_every_record_indexed_once_and_corrupt_ones_dead_lettered(settings, worker_process):
    good = {m: good_records(m, N) for m in MODALITIES}
    bad = bad_records()
    # Interleave so bad records share batches with good ones.
    mixed = []
    for i in range(N):
        mixed.extend(good[m][i] for m in MODALITIES)
        if i % 20 == 10 and bad:
            mixed.append(bad.pop())
    mixed.extend(bad)
    bad = bad_records()
    worker = worker_process()
    produce(settings, mixed)
    produced = {m: sum(r.modality is m for r in mixed) for m in MODALITIES}
    bad_per_modality = {m: sum(r.modality is m for r in bad) for m in MODALITIES}

    # The worker's own account, once it has committed every input record: each record
    # consumed once, each good one upserted once (the counter counts upserts, so a record
    # indexed twice shows here even though Redis would still hold N keys), each bad one
    # dead-lettered once.
    done = wait_until_processed(settings, [worker], produced)
    assert done.consumed == produced, (done, worker.log_tail())
    assert done.indexed == {m: N for m in MODALITIES}, (done, worker.log_tail())
    assert done.deadlettered == bad_per_modality, (done, worker.log_tail())
    # What the worker says it did is what is there: N keys per modality, every dead letter
    # on the topic and not one more (read to the topic's end, no waiting for quiet).
    counts = {m: len(item_keys(settings, m)) for m in MODALITIES}
    assert counts == {m: N for m in MODALITIES}, worker.log_tail()
    letters = read_to_end(settings, settings.topic("deadletter"))

    # Keys come from Kafka positions: one partition, so offsets follow production order.
    per_topic_offset: dict[Modality, int] = dict.fromkeys(MODALITIES, 0)
    expected_keys: dict[Modality, set[str]] = {m: set() for m in MODALITIES}
    position_of = {}
    for rec in mixed:
        off = per_topic_offset[rec.modality]
        per_topic_offset[rec.modality] += 1
        if rec.bad_reason is None:
            key = item_key(rec.modality, settings.input_topic(rec.modality), 0, off,
                           prefix=settings.topic_prefix, space=trivial_space(rec.modality))
            expected_keys[rec.modality].add(key)
            position_of[key] = rec
    for m in MODALITIES:
        assert item_keys(settings, m) == expected_keys[m]

    # Source, ts, model and the modality's evidence are stored with each item.
    for key in [sorted(expected_keys[m])[7] for m in MODALITIES]:
        rec = position_of[key]
        stored = asyncio.run(_stored(settings, key))
        assert stored[b"source"].decode() == rec.source
        assert int(stored[b"ts"]) == rec.ts_ms
        assert stored[b"model"].startswith(b"trivial-")
        assert 0 < asyncio.run(_ttl(settings, key)) <= settings.retention_s  # retention
        if rec.modality is Modality.VIDEO:
            assert stored[b"thumb"][:2] == b"\xff\xd8"  # a JPEG
        if rec.modality is Modality.LOGS:
            assert stored[b"text"]

    # KNN with an item's own vector finds that item first.
    for m in MODALITIES:
        key = sorted(expected_keys[m])[N // 2]
        assert asyncio.run(_knn_own_vector(settings, m, key))[0] == key

    # Every corrupt record is a dead letter with its bytes, the reason and its origin.
    assert len(letters) == len(bad)
    by_source = {lt.key.decode(): lt for lt in letters}
    for rec in bad:
        letter = by_source[rec.source]
        headers = dict(letter.headers)
        assert letter.value == rec.value
        assert rec.bad_reason in headers[HEADER_ERROR].decode().lower(), headers
        assert headers[HEADER_ORIGIN_TOPIC].decode() == settings.input_topic(rec.modality)
        assert int(headers[HEADER_ORIGIN_OFFSET]) >= 0
        for name, value in rec.headers:
            assert headers[name] == value

    # Counts add up: keys + dead letters on the topic == produced.
    assert sum(counts.values()) + len(letters) == len(mixed)
    status, doc = worker.get("/openapi.json")
    assert status == 200 and {"/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    assert worker.stop() == 0


def test_default_log_encoder_and_health_while_a_long_batch_embeds(settings, worker_process):
    """MiniLM on a batch of long lines keeps an inference lane busy; /healthz answers."""
    n = 64
    worker = worker_process(LOOKOUT_ENCODER_LOGS="minilm", LOOKOUT_BATCH_SIZE_LOGS=str(n),
                            LOOKOUT_MAX_WAIT_LOGS_S="5")
    latencies: list[float] = []
    done = threading.Event()

    def poll_health() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            status, _ = worker.get("/healthz", timeout_s=5)
            latencies.append(time.perf_counter() - t0 if status == 200 else float("inf"))
            time.sleep(0.05)

    long_lines = [
        InputRecord(Modality.LOGS, f"app-{i % 4}", BASE_TS_MS + i,
                    (log_line(i)[0].decode("utf-8", "replace") + " padding words" * 30).encode(),
                    encode_headers("text/plain", BASE_TS_MS + i))
        for i in range(n)
    ]
    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    try:
        produce(settings, long_lines)
        progress = wait_until_processed(settings, [worker], {Modality.LOGS: n}, timeout_s=150)
    finally:
        done.set()
        poller.join(timeout=10)
    assert progress.indexed[Modality.LOGS] == n, (progress, worker.log_tail())
    assert len(item_keys(settings, Modality.LOGS)) == n
    key = sorted(item_keys(settings, Modality.LOGS))[0]
    stored = asyncio.run(_stored(settings, key))
    assert b"minilm" in stored[b"model"].lower()
    assert len(stored[b"embedding"]) == 384 * 4
    assert asyncio.run(_knn_own_vector(settings, Modality.LOGS, key))[0] == key

    status, text = worker.get("/metrics")
    encode_s = metric_value(text, "lookout_stage_seconds_sum", 'modality="logs",stage="encode"')
    print(json.dumps({"healthz_polls": len(latencies), "healthz_max_s": max(latencies),
                      "logs_encode_s": encode_s}))
    assert len(latencies) >= 5
    assert max(latencies) < 1.0  # liveness: the event loop answers while the batch embeds
    assert worker.stop() == 0


def test_two_workers_in_one_group_share_the_partitions(settings, worker_process):
    settings = settings.model_copy(update={"partitions": 4})
    first, second = started_together(worker_process, 2, LOOKOUT_PARTITIONS="4")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the group rebalanced over both members
        shares = [w.get("/readyz")[1].get("assigned_partitions", 0) for w in (first, second)]
        if all(shares) and sum(shares) == 4 * len(MODALITIES):
            break
        time.sleep(0.3)
    assert all(shares) and sum(shares) == 4 * len(MODALITIES), shares

    n = 120
    records = [
        InputRecord(r.modality, f"cam-{i % 16}", r.ts_ms, r.value, r.headers)
        for i, r in enumerate(good_records(Modality.VIDEO, n))
    ]
    produce(settings, records)
    # Upserts summed over the workers (not keys, which a double upsert would not change):
    # every record indexed by exactly one of them, and both did a share.
    done = wait_until_processed(settings, [first, second], {Modality.VIDEO: n})
    assert done.consumed[Modality.VIDEO] == done.indexed[Modality.VIDEO] == n, (
        done, first.log_tail(), second.log_tail())
    assert len(item_keys(settings, Modality.VIDEO)) == n
    per_worker = [
        metric_value(w.get("/metrics")[1], "lookout_items_indexed_total") for w in (first, second)
    ]
    assert all(count > 0 for count in per_worker), per_worker
    assert sum(per_worker) == n
    assert first.stop() == 0 and second.stop() == 0
