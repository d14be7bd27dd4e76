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
