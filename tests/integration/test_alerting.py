"""Standing queries end to end: real Kafka, Redis and `lookout worker` subprocesses.

Workers use the `trivial` encoders (hashed character trigrams for logs: a real text
space, cheap), except the MiniLM test. Thresholds are chosen from the encoder's own scores,
computed here with the same encoder, so the premises are checked, not assumed.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
import torch

from encoders.registry import build_encoder
from streams.settings import Settings
from streams.webhooks import ALERT_ID_HEADER, SIGNATURE_HEADER, verify_signature
from tests.helpers import wait_for
from tests.integration.alerting_helpers import (
    SseClient,
    WebhookReceiver,
    alerts_on_topic,
    call,
    produce_logs,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DISK = "disk full on volume /data, write failed"
PAYMENT = "payment failed for order 4411 card declined"
PAYMENT_TEST = "payment failed for order test-account sandbox card declined"
NOISE = [f"user u{i} logged in from 10.0.0.{i} session ok" for i in range(20)]
SECRET = "hunter2"


def _scores(a: str, others: list[str]) -> list[float]:
    enc = build_encoder("trivial", "logs", device="cpu")
    v = enc.encode_text([a, *others])
    return (v[1:] @ v[0]).tolist()


def _percentile(values: list[float], q: float) -> float:
    return float(torch.tensor(values).quantile(q)) if values else float("nan")


def test_alerts_fire_filter_stream_and_sign(settings: Settings, worker_process):
    worker = worker_process()
    base = worker.base_url
    hook = WebhookReceiver().start()
    try:
        # Premises of the negative-example case, computed with the worker's encoder.
        pos_s, neg_s = _scores(PAYMENT, [PAYMENT, PAYMENT_TEST])
        assert neg_s < 0.9
        noise = max(_scores(DISK, NOISE) + _scores(PAYMENT, NOISE))
        threshold = 0.75
        assert noise < threshold

        status, disk = call(base, "POST", "/queries", {
            "id": "disk-full", "name": "Disk full", "modality": "logs", "positives": [DISK],
            "threshold": threshold, "cooldown_s": 0, "severity": "critical",
            "labels": {"team": "storage"},
            "webhooks": [{"url": hook.url, "secret": SECRET}],
        })
        assert status == 201, disk
        status, pay = call(base, "POST", "/queries", {
            "id": "payment", "name": "Payment failures", "modality": "logs",
            "positives": [PAYMENT], "negatives": [PAYMENT_TEST], "threshold": threshold,
            "cooldown_s": 0,
        })
        assert status == 201, pay
        status, listed = call(base, "GET", "/queries")
        assert {q["id"] for q in listed["queries"]} == {"disk-full", "payment"}

        sse = SseClient(base + "/alerts/stream?query=disk-full").start()
        sse_all = SseClient(base + "/alerts/stream").start()
        lines = [(f"app-{i % 3}", NOISE[i]) for i in range(10)]
        lines += [("app-1", DISK), ("app-2", DISK.upper().lower() + " ")]
        lines += [("pay-1", PAYMENT), ("pay-1", PAYMENT_TEST)]
        lines += [(f"app-{i % 3}", NOISE[10 + i]) for i in range(10)]
        produce_logs(settings, lines)  # lookout-ts = now, so ts -> alert is the latency

        assert wait_for(lambda: len(sse_all.events) >= 3, 60), (sse_all.events,
                                                                 worker.log_tail())
        time.sleep(2.0)  # anything extra would have arrived by now
        topic = alerts_on_topic(settings)
        by_query: dict[str, list[dict]] = {}
        for a in topic:
            by_query.setdefault(a["query_id"], []).append(a)
        # Both disk lines fire (cooldown 0); the payment line fires, its negative twin not.
        assert len(by_query["disk-full"]) == 2
        assert [a["evidence"]["text"] for a in by_query["payment"]] == [PAYMENT]
        assert len({a["alert_id"] for a in topic}) == len(topic) == 3
        disk_alert = by_query["disk-full"][0]
        assert disk_alert["severity"] == "critical" and disk_alert["labels"] == {"team": "storage"}
        assert disk_alert["score"] >= threshold and disk_alert["modality"] == "logs"

        # SSE with ?query= gets that query's alerts and nothing else.
        assert wait_for(lambda: len(sse.events) >= 2, 10)
        time.sleep(0.5)
        assert {e["query_id"] for _, e in sse.events} == {"disk-full"}
        assert len(sse.events) == 2

        # Webhook: one delivery per disk alert, signature valid over the raw body.
        assert wait_for(lambda: len(hook.received) >= 2, 20)
        time.sleep(0.5)
        assert len(hook.received) == 2
        for headers, body in hook.received:
            assert verify_signature(body, SECRET, headers[SIGNATURE_HEADER])
            assert headers[ALERT_ID_HEADER] in {a["alert_id"] for a in by_query["disk-full"]}

        # History in Redis through the API, filtered.
        status, hist = call(base, "GET", "/alerts?query=payment")
        assert status == 200 and [a["query_id"] for a in hist["alerts"]] == ["payment"]
        status, hist = call(base, "GET", "/alerts?severity=critical&source=app-*")
        assert status == 200 and len(hist["alerts"]) == 2

        # Search and preview see the same retained items.
        status, found = call(base, "GET", f"/search?modality=logs&text={quote(DISK)}&k=3")
        assert status == 200 and found["results"][0]["evidence"]["text"].startswith("disk full")
        status, prev = call(base, "POST", "/queries/payment/preview", {})
        assert status == 200, prev
        assert [m["evidence"]["text"] for m in prev["matches"]] == [PAYMENT]
        assert prev["alert_count"] == 1

        # Latency from the record's timestamp to the alert (detected) and to the SSE client.
        detect = [(a["detected_at"] - a["ts"]) / 1000 for a in topic]
        seen = [t - e["ts"] / 1000 for t, e in sse_all.events]
        print(f"\nALERT LATENCY detected p50={_percentile(detect, .5):.3f}s "
              f"p99={_percentile(detect, .99):.3f}s; at SSE client "
              f"p50={_percentile(seen, .5):.3f}s p99={_percentile(seen, .99):.3f}s")
        sse.close()
        sse_all.close()
    finally:
        hook.stop()


BAD_REQUESTS = [
    ("POST", "/queries", {"name": "x", "modality": "smell", "positives": ["a"]},
     "unknown modality"),
    ("POST", "/queries", {"name": "x", "modality": "logs", "positives": []}, "positives"),
    ("POST", "/queries", {"name": "x", "modality": "logs", "positives": ["  "]},
     "text pattern is empty"),
    ("POST", "/queries", {"name": "x", "modality": "logs", "positives": ["a"], "threshold": 3},
     "threshold"),
    ("POST", "/queries", {"name": "x", "modality": "video",
                          "positives": [{"payload_b64": "bm90IGFuIGltYWdl",
                                         "content_type": "image/jpeg"}]},
     "unreadable positive example"),
    ("POST", "/queries", {"name": "x", "modality": "audio", "positives": ["glass breaking"]},
     "text space"),
    ("POST", "/queries", "not an object", "JSON object"),
    ("GET", "/queries/nope", None, "no standing query"),
    ("PATCH", "/queries/nope", {"threshold": 0.5}, "no standing query"),
    ("GET", "/search?modality=logs", None, "exactly one of"),
    ("GET", "/search?modality=smell&text=a", None, "unknown modality"),
    ("GET", "/search?modality=logs&text=a&k=0", None, "k must be within"),
    ("GET", "/search?modality=logs&text=a&since=yesterday", None, "since="),
    ("GET", "/alerts?severity=loud", None, "unknown severity"),
    ("GET", "/items/foo/thumb", None, "item keys start with"),
]


def test_bad_requests_get_json_errors(settings: Settings, worker_process):
    worker = worker_process()
    for method, path, body, needle in BAD_REQUESTS:
        status, err = call(worker.base_url, method, path, body)
        assert 400 <= status < 500, (path, body, status, err)
        assert err["status"] == status and needle in err["error"], (path, body, err)
