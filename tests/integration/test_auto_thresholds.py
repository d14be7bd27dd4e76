"""`threshold: auto` end to end on real Kafka and Redis, with the offline MiniLM encoder.

A query registered with no threshold starts on its encoder's prior, learns its background
from the stream (every worker's counts in one Redis histogram), and then raises one alert
per incident and none on routine traffic; a person's verdict teaches it an example.
"""

from __future__ import annotations

import time

from encoders.modality import Modality
from streams.config.settings import Settings
from tests.helpers import metric_value, wait_for
from tests.integration.alerting_helpers import call, produce_logs, wait_for_alerts
from tests.integration.progress import wait_until_processed

ROUTINE = [
    "GET /api/orders/{n} 200 in {n}ms",
    "user u{n} logged in from 10.0.0.{n}",
    "cache hit ratio {n} percent",
    "scheduled job report-{n} finished in {n}s",
    "POST /api/cart 201 created item {n}",
    "connection pool size {n}, idle {n}",
    "health check ok ({n} ms)",
    "rotated access log, {n} files kept",
]
INCIDENT = [
    "disk full: no space left on device /var",
    "No space left on device: the disk is full",
    "write failed, disk full (no space left on device)",
]
SOURCES = ("web-1", "db-1")


def _traffic(n: int) -> list[tuple[str, str]]:
    """n routine lines over two sources, with one incident burst per source at 40% and
    80% of the stream (3 lines each)."""
    lines = [(SOURCES[i % 2], ROUTINE[i % len(ROUTINE)].replace("{n}", str(7 * i % 997)))
             for i in range(n)]
    for at, source in ((int(n * 0.4), "web-1"), (int(n * 0.8), "db-1")):
        lines[at:at] = [(source, text) for text in INCIDENT]
    return lines


def test_an_auto_query_learns_its_background_and_alerts_once_per_incident(
    settings: Settings, worker_process
) -> None:
    worker = worker_process(LOOKOUT_ENCODER_LOGS="minilm")
    status, body = call(worker.api_url, "POST", "/queries", {
        "id": "disk-full", "name": "disk full", "modality": "logs",
        "positives": ["disk full: no space left on device"]})
    assert status == 201, body
    assert body["threshold"] == "auto"
    assert body["calibration"]["basis"] == "prior" and body["calibration"]["background_items"] == 0

    lines = _traffic(300)
    t0 = int(time.time() * 1000) - 600_000  # one line a second, ten minutes ago
    produce_logs(settings, lines, ts_ms=t0, step_ms=1000)
    progress = wait_until_processed(settings, [worker], {Modality.LOGS: len(lines)})
    assert progress.indexed[Modality.LOGS] == len(lines)

    def learned() -> bool:
        cal = call(worker.api_url, "GET", "/queries/disk-full")[1]["calibration"]
        return cal["background_items"] == len(lines)

    assert wait_for(learned, 30), call(worker.api_url, "GET", "/queries/disk-full")[1]
    shown = call(worker.api_url, "GET", "/queries/disk-full")[1]
    cal = shown["calibration"]
    assert cal["basis"] == "blend"  # 60 <= 306 background items < 600
    assert 0.0 < shown["effective_threshold"] < 1.0
    # 306 lines a second apart over two sources: about 43,000 a day per source
    assert cal["sources"] == 2 and 40_000 <= cal["items_per_source_day"] <= 47_000
    exported = metric_value(worker.metrics_text(), "lookout_query_threshold",
                            'query_id="disk-full"')
    assert abs(exported - shown["effective_threshold"]) < 1e-3

    # One alert per burst, none on the routine lines (the worker counted them all).
    assert progress.alerts == 2, worker.log_tail()
    alerts = wait_for_alerts(settings, 2)
    assert sorted(a["source"] for a in alerts) == ["db-1", "web-1"]
    assert all(a["evidence"]["text"] in INCIDENT for a in alerts)

    # A query registered now starts from the retained items (a sample of the stream, scored
    # for it alone): the first query's background is left as it was.
    status, late = call(worker.api_url, "POST", "/queries", {
        "id": "db-down", "name": "database down", "modality": "logs",
        "positives": ["database connection refused"]})
    assert status == 201, late
    assert late["calibration"]["background_items"] == len(lines)
    assert call(worker.api_url, "GET", "/queries/disk-full")[1]["calibration"][
        "background_items"] == len(lines)

    explained = call(worker.api_url, "GET", "/queries/disk-full/explain?bins=10&k=3")[1]
    assert sum(explained["histogram"]["counts"]) == len(lines)
    assert explained["best_matches"][0]["evidence"]["text"] in INCIDENT

    # A verdict: the alerting line becomes a negative example; precision is exported.
    status, verdict = call(worker.api_url, "POST", f"/alerts/{alerts[0]['alert_id']}/feedback",
                           {"verdict": "false_alarm", "by": "test"})
    assert status == 200 and verdict["learned"] is True, verdict
    shown = call(worker.api_url, "GET", "/queries/disk-full")[1]
    assert shown["negatives"] == [f"item:{alerts[0]['item_key']}"]
    assert shown["feedback"]["false_alarm"] == 1 and shown["feedback"]["precision"] == 0.0
    assert call(worker.api_url, "POST", "/alerts/nope/feedback", {"verdict": "confirmed"})[0] \
        == 404


def test_centered_queries_score_against_each_sources_mean_shared_by_every_worker(
    settings: Settings,
) -> None:
    """Two worker processes each see part of two microphones; through Redis both end up
    with the same per-source means (all items of a source, whichever process saw them),
    and a centered query scores a dock item against the dock's mean, not the lobby's."""
    import asyncio

    import torch
    from redis.asyncio import Redis

    from streams.alerting.thresholds import MIN_CENTER_ITEMS, ThresholdKeeper
    from streams.core.metrics import Metrics
    from streams.queries.matching import PatternMatrix, QueryPatterns
    from tests.registry_stub import logs_registry

    gen = torch.Generator().manual_seed(5)
    hum, room, siren = (torch.eye(8)[i] for i in range(3))

    def chunks(base: torch.Tensor, n: int) -> torch.Tensor:
        return torch.nn.functional.normalize(base + 0.05 * torch.randn(n, 8, generator=gen), dim=1)

    dock, lobby = chunks(2.0 * hum, 2 * MIN_CENTER_ITEMS), chunks(room, 2 * MIN_CENTER_ITEMS)
    example = torch.nn.functional.normalize(room + siren, dim=0).reshape(1, -1)
    space = "audio:aisfx-test"

    async def run() -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
        redis = Redis.from_url(settings.resolved_redis_url())
        try:
            keepers = [ThresholdKeeper(redis, settings.topic_prefix, logs_registry(), Metrics())
                       for _ in range(2)]
            half = MIN_CENTER_ITEMS  # each process sees half of each source
            keepers[0].observe_vectors(space, torch.cat([dock[:half], lobby[:half]]),
                                       ["mic-dock"] * half + ["mic-lobby"] * half)
            keepers[1].observe_vectors(space, torch.cat([dock[half:], lobby[half:]]),
                                       ["mic-dock"] * half + ["mic-lobby"] * half)
            for k in (*keepers, keepers[0]):  # the first one reads the second's sums too
                await k.refresh()
            matrices = []
            for k in keepers:
                m = PatternMatrix([QueryPatterns("siren", example, torch.zeros(0, 8), 0.5,
                                                 centered=True)], 8, torch.device("cpu"))
                k.apply(m, space)
                matrices.append(m)
            event = torch.nn.functional.normalize(2.0 * hum + siren, dim=0).reshape(1, -1)
            scores = matrices[0].scores(torch.cat([event, dock[:1]]), ["mic-dock"] * 2)[0]
            return [m.centers for m in matrices], scores[:, 0]
        finally:
            await redis.aclose()

    centers, scores = asyncio.run(run())
    for source, items in (("mic-dock", dock), ("mic-lobby", lobby)):
        expected = items.double().mean(dim=0).float()
        for c in centers:
            assert torch.allclose(c[source].reshape(-1), expected, atol=1e-5)
    siren_at_dock, hum_alone = scores.tolist()
    assert siren_at_dock > 0.6 and hum_alone < 0.3


def test_a_centered_query_previews_with_the_means_the_workers_keep_in_redis(
    settings: Settings,
) -> None:
    """A worker centers a query on the per-source means it keeps in Redis; a preview served
    by another process (which never saw those items) reads the same means from Redis, so
    its scores equal the live ones and it finds the event in the retained history."""
    import asyncio

    import numpy as np
    import torch
    from redis.asyncio import Redis

    from streams.alerting.preview import preview_query
    from streams.alerting.thresholds import ThresholdKeeper, center_space
    from streams.core.metrics import Metrics
    from streams.index.store import IndexStore, ItemDoc
    from streams.queries.registry import build_matrix, starting_threshold
    from tests.centered_stub import HUM, ROOM, SIREN, CenteredEncoder, chunks, siren_query, unit
    from tests.registry_stub import logs_registry

    encoder = CenteredEncoder()
    rq = siren_query(encoder)
    dock, lobby = chunks(2.0 * HUM, 30, seed=11), chunks(ROOM, 30, seed=12)
    event = unit(2.0 * HUM + SIREN).reshape(1, -1)
    vectors = torch.cat([dock, lobby, event])
    sources = ["mic-dock"] * 30 + ["mic-lobby"] * 30 + ["mic-dock"]
    space = center_space(Modality.AUDIO, encoder)
    threshold = starting_threshold(rq.query, encoder)

    async def no_means(_space: str, _sources: list[str]) -> dict:
        return {}

    async def run() -> tuple[list[float], dict, dict]:
        redis = Redis.from_url(settings.resolved_redis_url())
        try:
            store = IndexStore(redis, prefix=settings.topic_prefix, modality=Modality.AUDIO,
                               model_short_id=encoder.short_id, dims=encoder.dim)
            await store.ensure()
            t0 = int(time.time() * 1000) - 120_000
            await store.upsert([ItemDoc(
                key=f"{store.key_prefix}{settings.topic_prefix}.audio:0:{i}", source=s,
                ts_ms=t0 + 1000 * i, vector=v.numpy().astype(np.float32), topic="t",
                partition=0, offset=i, content_type="audio/wav")
                for i, (s, v) in enumerate(zip(sources, vectors, strict=True))])
            # the worker: observes the ambience, syncs its sums, centers its live matrix
            worker = ThresholdKeeper(redis, settings.topic_prefix, logs_registry(), Metrics())
            worker.observe_vectors(space, vectors[:-1], sources[:-1])
            await worker.refresh()
            live, _ = build_matrix([rq], encoder)
            worker.apply(live, space)
            live_scores = live.scores(vectors, sources)[0][:, 0].tolist()
            # the API of another worker process: nothing observed, only Redis
            other = ThresholdKeeper(redis, settings.topic_prefix, logs_registry(), Metrics())
            preview = await preview_query(rq, encoder, store, threshold=threshold,
                                          means=other.source_means)
            without = await preview_query(rq, encoder, store, threshold=threshold,
                                          means=no_means)
            return live_scores, preview, without
        finally:
            await redis.aclose()

    live_scores, preview, without = asyncio.run(run())
    assert without["matches"] == []  # what a preview without the means returned
    event_key = f"{settings.topic_prefix}.audio:0:60"
    assert [m["key"].endswith(event_key) for m in preview["would_fire"]] == [True], preview
    assert preview["match_count"] == sum(s >= threshold for s in live_scores) == 1
    assert preview["matches"][0]["score"] == round(live_scores[-1], 6)
