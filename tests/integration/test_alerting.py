"""Standing queries end to end: real Kafka, Redis and `lookout worker` subprocesses.

Workers use the `trivial` encoders (hashed character trigrams for logs: a real text
space, cheap), except the MiniLM test. Thresholds are chosen from the encoder's own scores,
computed here with the same encoder, so the premises are checked, not assumed.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import torch
from redis.asyncio import Redis

from encoders.modality import Modality
from encoders.registry import build_encoder
from streams.alerting.alerts import Alert, AlertClaimBusy, AlertStore
from streams.alerting.egress import EgressPolicy
from streams.alerting.policy import (
    AlertPolicy,
    Candidate,
    PolicyStateConflict,
    PolicyStateStore,
)
from streams.alerting.webhooks import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    DeliveryPolicy,
    WebhookSender,
    verify_signature,
)
from streams.config.settings import Settings
from streams.core.metrics import Metrics
from streams.queries.model import PolicyRule, Webhook
from tests.helpers import metric_value, wait_for
from tests.integration.alerting_helpers import (
    SseClient,
    WebhookReceiver,
    alerts_on_topic,
    call,
    produce_logs,
    wait_for_alerts,
)
from tests.integration.pipeline_records import item_keys, produce
from tests.integration.progress import (
    committed_and_end,
    wait_until_delivered,
    wait_until_processed,
)
from tests.integration.worker_fixtures import lookout_cli, started_together
from tests.records import good_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DISK = "disk full on volume /data, write failed"
PAYMENT = "payment failed for order 4411 card declined"
PAYMENT_TEST = "payment failed for order test-account sandbox card declined"
NOISE = [f"user u{i} logged in from 10.0.0.{i} session ok" for i in range(20)]
SECRET = "hunter2"
SECRET_ENV = "LOOKOUT_WEBHOOK_SECRET_TEST"
WITH_SECRET = {SECRET_ENV: SECRET}  # the workers' environment holds it, the topic not


def _scores(a: str, others: list[str]) -> list[float]:
    enc = build_encoder("trivial", "logs", device="cpu")
    v = enc.encode_text([a, *others])
    return (v[1:] @ v[0]).tolist()


def _percentile(values: list[float], q: float) -> float:
    return float(torch.tensor(values).quantile(q)) if values else float("nan")


def test_alerts_fire_filter_stream_and_sign(settings: Settings, worker_process):
    worker = worker_process(**WITH_SECRET)
    base = worker.api_url
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
            "webhooks": [{"url": hook.url, "secret_env": SECRET_ENV}],
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

        # Once the worker has processed and committed every line, its alert counter says
        # how many alerts it published; each reader below gets exactly that many.
        done = wait_until_processed(settings, [worker], {Modality.LOGS: len(lines)})
        assert done.indexed[Modality.LOGS] == len(lines), (done, worker.log_tail())
        # Both disk lines fire (cooldown 0); the payment line fires, its negative twin not.
        assert done.alerts == 3, (done, worker.log_tail())
        topic = wait_for_alerts(settings, done.alerts)
        by_query: dict[str, list[dict]] = {}
        for a in topic:
            by_query.setdefault(a["query_id"], []).append(a)
        assert len(by_query["disk-full"]) == 2
        assert [a["evidence"]["text"] for a in by_query["payment"]] == [PAYMENT]
        assert len({a["alert_id"] for a in topic}) == len(topic) == done.alerts
        disk_alert = by_query["disk-full"][0]
        assert disk_alert["severity"] == "critical" and disk_alert["labels"] == {"team": "storage"}
        assert disk_alert["score"] >= threshold and disk_alert["modality"] == "logs"

        # SSE: every alert once on the unfiltered stream; with ?query= that query's alerts
        # and nothing else.
        assert wait_for(lambda: len(sse_all.events) >= done.alerts, 30), sse_all.events
        assert sorted(e["alert_id"] for _, e in sse_all.events) == sorted(
            a["alert_id"] for a in topic)
        disk_ids = sorted(a["alert_id"] for a in by_query["disk-full"])
        assert wait_for(lambda: len(sse.events) >= len(disk_ids), 30), sse.events
        assert sorted(e["alert_id"] for _, e in sse.events) == disk_ids

        # Webhook: one delivery per disk alert, signature valid over the raw body. Once the
        # workers' dispatchers committed the alerts topic to its end, no POST is pending.
        assert wait_until_delivered(settings) == 0, worker.log_tail()
        assert len(hook.received) == len(disk_ids)
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
    ("GET", "/search?modality=logs&text=a&k=0", None, "k must be >= 1"),
    ("GET", "/search?modality=logs&text=a&since=yesterday", None, "since="),
    ("GET", "/alerts?severity=loud", None, "unknown severity"),
    ("GET", "/items/foo/thumb", None, "item keys start with"),
    ("POST", "/queries", {"name": "x", "modality": "logs", "positives": ["a"],
                          "webhooks": [{"url": "https://h.example/", "secret": "s"}]},
     "webhook secrets are not stored in the query topic"),
    ("POST", "/queries", {"name": "x", "modality": "logs", "positives": ["a"],
                          "webhooks": [{"url": "https://h.example/", "secret_env": "HOME"}]},
     "secret_env"),
    ("POST", "/queries", {"name": "x", "modality": "logs", "positives": ["a"],
                          "webhooks": [{"url": "https://h.example/",
                                        "secret_env": "LOOKOUT_WEBHOOK_SECRET_UNSET"}]},
     "is not set in the worker's environment"),
]


def test_bad_requests_get_json_errors(settings: Settings, worker_process):
    worker = worker_process()
    for method, path, body, needle in BAD_REQUESTS:
        status, err = call(worker.api_url, method, path, body)
        assert 400 <= status < 500, (path, body, status, err)
        assert err["status"] == status and needle in err["error"], (path, body, err)


def test_sigkill_between_matching_and_commit_no_duplicates(settings: Settings, worker_process):
    """Kill -9 right after alerts are published (offsets not yet committed), restart:
    the records are matched again, yet every alert_id is on the topic once. Every alert
    reaches the webhook; a second call happens only for a POST the kill cut short (the
    receiver had it, the worker had not yet recorded it), carrying the same alert id."""
    hook = WebhookReceiver().start()
    try:
        worker = worker_process(**WITH_SECRET)
        status, body = call(worker.api_url, "POST", "/queries", {
            "id": "disk", "name": "disk", "modality": "logs", "positives": [DISK],
            "threshold": 0.75, "cooldown_s": 0,
            "webhooks": [{"url": hook.url, "secret_env": SECRET_ENV}],
        })
        assert status == 201, body
        logs_topic = settings.input_topic("logs")
        produced = 0
        kills: list[float] = []
        for attempt in range(4):
            lines = [(f"host-{attempt}-{i}", f"{DISK} #{attempt}-{i}") for i in range(8)]
            lines += [(f"host-{attempt}", n) for n in NOISE[:8]]
            produce_logs(settings, lines)
            produced += 8
            assert wait_for(lambda n=produced: len(hook.received) >= n - 7, 60), worker.log_tail()
            worker.kill()  # right after the first alerts of this round: before the commit
            kills.append(time.monotonic())
            committed, end = committed_and_end(settings, settings.worker_id, logs_topic)
            if committed < end:
                break
            worker = worker_process(**WITH_SECRET)  # the kill came after the commit; try again
        else:
            pytest.fail("could not kill the worker before its offset commit in 4 tries")
        published_before = len(alerts_on_topic(settings))  # no worker runs: this is final
        restarted = worker_process(**WITH_SECRET)
        # The restarted worker resumes at the commit: the uncommitted records are consumed
        # and matched again, each once, and committed to the end.
        done = wait_until_processed(settings, [restarted], {Modality.LOGS: end - committed})
        assert done.consumed[Modality.LOGS] == done.indexed[Modality.LOGS] == end - committed > 0, (
            done, restarted.log_tail())
        # Matched again, yet it publishes only the alerts the kill kept off the topic.
        assert done.alerts == produced - published_before, (done, published_before)
        topic = alerts_on_topic(settings)
        ids = [a["alert_id"] for a in topic]
        assert len(ids) == len(set(ids)) == produced, (ids, restarted.log_tail(400))
        # A delivery cut by the kill waits out its lease (one POST timeout) and resumes;
        # once the dispatchers committed the alerts topic to its end, none is pending.
        assert wait_until_delivered(settings) == 0, restarted.log_tail()
        delivered = [h[ALERT_ID_HEADER] for h, _ in hook.received]
        assert set(delivered) == set(ids)
        repeated = {i for i in delivered if delivered.count(i) > 1}
        for alert_id in repeated:
            arrived = hook.received_at[: len(delivered)]  # appended before `received`
            times = [t for d, t in zip(delivered, arrived, strict=True) if d == alert_id]
            assert len(times) == 2 and any(times[0] <= k < times[1] for k in kills), \
                (alert_id, times, kills)
        # At most the deliveries in flight at a kill (one round's alerts) are repeated.
        assert len(repeated) <= 8 * len(kills), repeated
    finally:
        hook.stop()


def test_webhook_down_when_the_worker_dies_is_delivered_after_restart(
    settings: Settings, worker_process
):
    """The input records are matched and committed, the webhook hangs, kill -9: the
    alerts are not lost, because webhook delivery commits its own offsets on the alerts
    topic only once delivered. The restarted worker delivers them without re-reading the
    input."""
    hook = WebhookReceiver(hanging=True).start()
    try:
        worker = worker_process()
        status, body = call(worker.api_url, "POST", "/queries", {
            "id": "disk", "name": "disk", "modality": "logs", "positives": [DISK],
            "threshold": 0.75, "cooldown_s": 0, "webhooks": [{"url": hook.url}],
        })
        assert status == 201, body
        produce_logs(settings, [(f"host-{i}", f"{DISK} #{i}") for i in range(3)])
        logs_topic = settings.input_topic("logs")

        def matched_and_committed() -> bool:
            committed, end = committed_and_end(settings, settings.worker_id, logs_topic)
            return hook.hung >= 1 and committed == end == 3

        assert wait_for(matched_and_committed, 60), worker.log_tail()
        worker.kill()
        hook.hanging = False
        ids = {a["alert_id"] for a in alerts_on_topic(settings)}
        assert len(ids) == 3 and not hook.received

        restarted = worker_process()
        assert wait_until_delivered(settings) == 0, restarted.log_tail()
        # The hanging POSTs never answered 2xx, so each alert is received exactly once.
        assert sorted(h[ALERT_ID_HEADER] for h, _ in hook.received) == sorted(ids)
        status, text = restarted.get("/metrics")
        assert metric_value(text, "lookout_records_consumed_total", 'modality="logs"') == 0
    finally:
        hook.stop()


def test_incidents_min_hits_and_cooldown_in_event_time(settings: Settings, worker_process):
    """A source matching every second for a minute is ONE incident (one alert); a late hit
    16 s after it still belongs to it (cooldown 30 s lengthens clear_s); a crossing 35 s
    after it is a new incident; a single stray hit of a min_hits=3 query never fires."""
    worker = worker_process()
    for body in (
        {"id": "cool", "name": "cool", "modality": "logs", "positives": [DISK],
         "threshold": 0.75, "cooldown_s": 30, "sources": ["disk-*"]},
        {"id": "hyst", "name": "hyst", "modality": "logs", "positives": [PAYMENT],
         "threshold": 0.75, "min_hits": 3, "window_s": 10},
    ):
        status, err = call(worker.api_url, "POST", "/queries", body)
        assert status == 201, err
    t0 = int(time.time() * 1000) - 180_000
    produce_logs(settings, [("disk-1", f"{DISK} n={i}") for i in range(60)], ts_ms=t0,
                 step_ms=1000)
    produce_logs(settings, [("disk-1", f"{DISK} late")], ts_ms=t0 + 75_000)
    produce_logs(settings, [("disk-1", f"{DISK} again {i}") for i in range(5)],
                 ts_ms=t0 + 110_000, step_ms=1000)
    produce_logs(settings, [("pay-1", PAYMENT)], ts_ms=t0)
    produce_logs(settings, [("other", f"{DISK} elsewhere")], ts_ms=t0)  # not a watched source
    done = wait_until_processed(settings, [worker], {Modality.LOGS: 68})
    assert done.indexed[Modality.LOGS] == 68, (done, worker.log_tail())
    assert done.alerts == 2, (done, worker.log_tail())  # cool at 0 s and 110 s; hyst: none
    topic = wait_for_alerts(settings, done.alerts)
    assert len(topic) == done.alerts
    cool = sorted(a["ts"] - t0 for a in topic if a["query_id"] == "cool")
    assert cool == [0, 110_000]
    assert [a for a in topic if a["query_id"] == "hyst"] == []
    status, hist = call(worker.api_url, "GET", "/alerts?query=cool")
    assert status == 200 and len(hist["alerts"]) == 2
    first = min(hist["alerts"], key=lambda a: a["ts"])
    assert first["incident"]["start"] == t0 and first["incident"]["end"] == t0 + 75_000
    # Three payment hits within 10 s fire once.
    produce_logs(settings, [("pay-1", f"{PAYMENT} retry {i}") for i in range(3)],
                 ts_ms=t0 + 60_000, step_ms=2000)
    done = wait_until_processed(settings, [worker], {Modality.LOGS: 71})
    assert done.alerts == 3, (done, worker.log_tail())
    topic = wait_for_alerts(settings, done.alerts)
    assert len(topic) == done.alerts
    assert [a["query_id"] for a in topic].count("hyst") == 1


def test_query_added_on_one_worker_is_active_on_another_and_after_restart(
    settings: Settings, worker_process
):
    a, b = started_together(worker_process, 2)
    status, body = call(a.api_url, "POST", "/queries", {
        "id": "disk", "name": "disk", "modality": "logs", "positives": [DISK],
        "threshold": 0.75, "cooldown_s": 0})
    assert status == 201, body
    posted = time.monotonic()

    def active_on_b() -> bool:
        # Listed by the API *and* in B's pattern matrix (the gauge is set after the swap).
        _, metrics_b = b.get("/metrics")
        return b.get("/queries/disk")[0] == 200 and metric_value(
            metrics_b, "lookout_standing_queries", 'modality="logs"') == 1

    assert wait_for(active_on_b, 5, 0.05), b.log_tail()
    seen_after = time.monotonic() - posted
    print(f"\nQUERY PROPAGATION A->B {seen_after:.3f}s")
    assert seen_after < 1.0
    # Whichever worker owns the partition raises the alert.
    produce_logs(settings, [("host", DISK)])
    done = wait_until_processed(settings, [a, b], {Modality.LOGS: 1})
    assert done.alerts == 1, (done, a.log_tail(), b.log_tail())  # one of them, once
    assert len(wait_for_alerts(settings, done.alerts)) == 1
    # PATCH on B disables it everywhere; delete on B removes it on A.
    status, body = call(b.api_url, "PATCH", "/queries/disk", {"enabled": False})
    assert status == 200 and body["enabled"] is False
    assert wait_for(lambda: a.get("/queries/disk")[1].get("enabled") is False, 5, 0.05)
    status, body = call(b.api_url, "PATCH", "/queries/disk", {"enabled": True})
    assert status == 200
    # After every worker is gone, a new one loads the query from the topic.
    a.kill()
    b.kill()
    c = worker_process()
    status, body = c.get("/queries/disk")
    assert status == 200 and body["enabled"] is True
    produce_logs(settings, [("host", f"{DISK} again")])
    assert wait_for(lambda: len(alerts_on_topic(settings)) == 2, 30), c.log_tail()
    status, _ = call(c.api_url, "DELETE", "/queries/disk")
    assert status == 200 and c.get("/queries/disk")[0] == 404


@pytest.mark.slow
def test_minilm_paraphrase_alert_and_cli(settings: Settings, worker_process, tmp_path):
    """A log line that says the same thing in other words fires (MiniLM), driven by the CLI.
    The queries are first registered by a worker with another logs model: on the MiniLM
    worker they are stale, and `query apply` registers them again with MiniLM."""
    pattern = "disk full: no space left on device"
    paraphrase = "write to /var/lib/postgresql failed, the volume has no free space"
    unrelated = ["user alice logged in from 10.1.2.3", "GET /api/orders 200 in 12 ms",
                 "cache warmed with 1200 entries", "scheduled backup finished"]
    enc = build_encoder("minilm", "logs", device="cpu")
    v = enc.encode_text([pattern, paraphrase, *unrelated])
    sims = (v[1:] @ v[0]).tolist()
    threshold = round((sims[0] + max(sims[1:])) / 2, 3)
    assert sims[0] > threshold > max(sims[1:]), sims

    patterns = tmp_path / "patterns.yaml"
    patterns.write_text(f"""
queries:
  - id: disk-full
    name: Disk full
    modality: logs
    positives: ["{pattern}"]
    threshold: {threshold}
    cooldown_s: 0
  - id: oom
    name: Out of memory
    modality: logs
    positives: ["process killed by the OOM killer"]
""")
    before = worker_process()  # trivial encoders
    done = lookout_cli("query", "apply", str(patterns), "--json", api=before.api_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["add"] == ["disk-full", "oom"]
    assert before.stop() == 0

    worker = worker_process(LOOKOUT_ENCODER_LOGS="minilm")
    api = worker.api_url
    listed = json.loads(lookout_cli("query", "list", "--json", api=api).stdout)
    assert [(q["id"], q["stale"]) for q in listed] == [("disk-full", True), ("oom", True)]
    for q in listed:  # why (both models) and the fix, in the API and the worker's log once
        assert q["model_id"] in q["stale_reason"] and enc.model_id in q["stale_reason"]
        assert "lookout query apply" in q["stale_reason"]
        assert worker.log_path.read_text().count(f"standing query {q['id']!r} is stale: "
                                                 f"{q['stale_reason']}") == 1
    table = lookout_cli("query", "list", api=api).stdout
    assert f"stale disk-full: {listed[0]['stale_reason']}" in table
    done = lookout_cli("query", "apply", str(patterns), "--json", api=api)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["update"] == ["disk-full", "oom"]
    shown = json.loads(lookout_cli("query", "show", "disk-full", api=api).stdout)
    assert not shown["stale"] and shown["model_id"] == enc.model_id
    again = lookout_cli("query", "apply", str(patterns), "--json", api=api)
    assert json.loads(again.stdout)["unchanged"] == ["disk-full", "oom"]
    patterns.write_text(patterns.read_text().split("  - id: oom")[0])
    pruned = lookout_cli("query", "apply", str(patterns), "--json", api=api)
    assert json.loads(pruned.stdout)["remove"] == ["oom"], pruned.stdout
    listed = lookout_cli("query", "list", "--json", api=api)
    assert [q["id"] for q in json.loads(listed.stdout)] == ["disk-full"]

    produce_logs(settings, [("db-1", u) for u in unrelated[:2]] + [("db-1", paraphrase)]
                 + [("db-1", u) for u in unrelated[2:]])
    done = wait_until_processed(settings, [worker], {Modality.LOGS: len(unrelated) + 1})
    assert done.alerts == 1, (done, worker.log_tail())  # the paraphrase, nothing unrelated
    (alert,) = wait_for_alerts(settings, done.alerts)
    assert alert["evidence"]["text"] == paraphrase

    out = lookout_cli("alerts", "list", "--json", api=api)
    assert [json.loads(line)["alert_id"] for line in out.stdout.splitlines()] == [
        alert["alert_id"]]  # JSON Lines
    out = lookout_cli("search", "no space left on disk", "-m", "logs", "-k", "2", "--json", api=api)
    assert json.loads(out.stdout)["results"][0]["evidence"]["text"] == paraphrase, out.stderr
    out = lookout_cli("query", "preview", "disk-full", "--json", api=api)
    assert json.loads(out.stdout)["alert_count"] == 1, out.stderr
    bad = lookout_cli("query", "add", "x", "-m", "logs", "--threshold", "2", "-t", "a", api=api)
    assert bad.returncode != 0 and "threshold" in bad.stderr
    missing = lookout_cli("query", "show", "nope", api=api)
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr


def test_apply_applies_what_it_can_and_names_what_the_worker_refused(
    settings: Settings, worker_process, tmp_path
):
    worker = worker_process()
    patterns = tmp_path / "patterns.yaml"
    patterns.write_text(f"""
queries:
  - id: gone-item
    name: By an item that is not indexed
    modality: logs
    positives: [{{item_key: "{settings.topic_prefix}:item:logs:nope:0:1"}}]
  - id: disk
    name: Disk full
    modality: logs
    positives: ["{DISK}"]
""")
    done = lookout_cli("query", "apply", str(patterns), api=worker.api_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "add gone-item (failed)" in done.stdout and "1 failed" in done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert "1 of the file's queries were not applied: gone-item:" in line
    listed = json.loads(lookout_cli("query", "list", "--json", api=worker.api_url).stdout)
    assert [q["id"] for q in listed] == ["disk"]


LOOPBACK = EgressPolicy.parse("127.0.0.0/8")


def _sample_alert(item: str = "lookout:item:logs:t:0:1") -> Alert:
    return Alert.build(query_id="q", item_key=item, query_name="q", modality="logs",
                       source="s", ts=int(time.time() * 1000), score=0.9, threshold=0.5,
                       severity="warning")


def _outcomes_counted(metrics: Metrics) -> dict[str, float]:
    """Webhook outcomes that happened (every outcome's series starts at 0)."""
    return {s.labels["outcome"]: s.value
            for s in metrics.webhook_deliveries.collect()[0].samples
            if s.name.endswith("_total") and s.value}


def test_webhook_retries_with_backoff_then_never_again(settings: Settings):
    """Real Redis, real HTTP: two 503s, then delivered; a second delivery is skipped."""
    hook = WebhookReceiver(fail_first=2).start()
    metrics = Metrics()

    async def run() -> tuple[bool, bool]:
        redis = Redis.from_url(settings.resolved_redis_url())
        sender = WebhookSender(redis, settings.topic_prefix, metrics,
                               DeliveryPolicy(max_attempts=4, base_delay_s=0.05), LOOPBACK)
        try:
            alert = _sample_alert()
            hookspec = Webhook(url=hook.url, secret=SECRET)
            first = await sender.deliver(alert, hookspec)
            again = await sender.deliver(alert, hookspec)
            return first, again
        finally:
            await sender.close()
            await redis.aclose()

    try:
        assert asyncio.run(run()) == (True, True)
        assert len(hook.received) == 1
        headers, body = hook.received[0]
        assert verify_signature(body, SECRET, headers[SIGNATURE_HEADER])
        outcomes = _outcomes_counted(metrics)
        assert outcomes == {"retried": 2, "delivered": 1, "duplicate_skipped": 1}
    finally:
        hook.stop()


def _replay(url: str, headers: dict[str, str], body: bytes) -> int:
    """POST a captured delivery again, byte for byte (what an eavesdropper could do)."""
    keep = {k: v for k, v in headers.items() if k.lower().startswith(("x-lookout", "content-t"))}
    req = urllib.request.Request(url, data=body, method="POST", headers=keep)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_receiver_verifies_the_timestamped_signature_and_refuses_a_late_replay(
        settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """Real Redis, real HTTP: a receiver checking `X-Lookout-Signature` as documented
    accepts the delivery (secret from the worker's environment); the same bytes replayed
    after the tolerance window are refused, a receiver holding another secret refuses the
    delivery (final, no retries), and a secret_env unset on the worker posts nothing."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    hook = WebhookReceiver(secret=SECRET).start()
    other = WebhookReceiver(secret="not-" + SECRET).start()
    unset = WebhookReceiver(secret=SECRET).start()
    metrics = Metrics()

    async def run() -> list[bool]:
        redis = Redis.from_url(settings.resolved_redis_url())
        sender = WebhookSender(redis, settings.topic_prefix, metrics, egress=LOOPBACK)
        try:
            alert = _sample_alert("lookout:item:logs:t:0:7")
            return [await sender.deliver(alert, Webhook(url=h.url, secret_env=env))
                    for h, env in ((hook, SECRET_ENV), (other, SECRET_ENV),
                                   (unset, "LOOKOUT_WEBHOOK_SECRET_UNSET"))]
        finally:
            await sender.close()
            await redis.aclose()

    try:
        assert asyncio.run(run()) == [True, False, False]
        (headers, body), = hook.received
        t, v1 = headers[SIGNATURE_HEADER].split(",")
        assert abs(int(t.removeprefix("t=")) - time.time()) < 30 and len(v1) == len("v1=") + 64
        assert _replay(hook.url, headers, body) == 204  # within the window: receivers dedupe
        hook.clock = lambda: time.time() + 301  # the receiver's clock, 5 min + 1 s later
        assert _replay(hook.url, headers, body) == 401
        assert len(hook.refused) == 1 and len(hook.received) == 2
        assert len(other.refused) == 1 and not other.received
        assert not unset.refused and not unset.received
        outcomes = _outcomes_counted(metrics)
        assert outcomes == {"delivered": 1, "rejected": 1, "refused": 1}
    finally:
        hook.stop()
        other.stop()
        unset.stop()


def test_two_deliveries_of_one_alert_at_once_post_it_once(settings: Settings):
    """Real Redis, real HTTP: the same (alert, url) twice in one batch, or on two workers,
    races for one lease; the loser finds it delivered and posts nothing."""
    hook = WebhookReceiver().start()

    async def run() -> list[bool]:
        redis = Redis.from_url(settings.resolved_redis_url())
        senders = [WebhookSender(redis, settings.topic_prefix, egress=LOOPBACK)
                   for _ in range(2)]
        hookspec = Webhook(url=hook.url)
        try:
            alert = _sample_alert("lookout:item:logs:t:0:2")
            return await asyncio.gather(senders[0].deliver(alert, hookspec),
                                        senders[0].deliver(alert, hookspec),
                                        senders[1].deliver(alert, hookspec))
        finally:
            for sender in senders:
                await sender.close()
            await redis.aclose()

    try:
        assert asyncio.run(run()) == [True, True, True]
        assert len(hook.received) == 1
    finally:
        hook.stop()


def test_concurrent_publishers_put_one_record_per_alert_id(settings: Settings):
    """Two workers racing on the same alert (rebalance overlap): one send, one skip."""
    sent: list[bytes] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await asyncio.sleep(0.2)  # the broker round trip, while the other one tries
        sent.append(value)

    async def run() -> list[bool]:
        redis = Redis.from_url(settings.resolved_redis_url())
        stores = [AlertStore(redis, settings.topic_prefix, 3600) for _ in range(2)]
        alert = _sample_alert()

        async def attempt(store: AlertStore) -> bool:
            while True:
                try:
                    return await store.publish_once(alert, "alerts", send)
                except AlertClaimBusy:
                    await asyncio.sleep(0.05)  # what the pipeline's observer retry does

        try:
            results = await asyncio.gather(*(attempt(s) for s in stores))
            results.append(await stores[0].publish_once(alert, "alerts", send))
            history = await stores[1].history(query_id="q")
            assert [a.alert_id for a in history] == [alert.alert_id]
            return results
        finally:
            await redis.aclose()

    assert sorted(asyncio.run(run())) == [False, False, True]
    assert len(sent) == 1


def test_video_search_by_example_preview_and_thumbnail(settings: Settings, worker_process):
    """Multipart search by an example frame finds it, with a thumbnail URL that serves a JPEG;
    a video query registered from an indexed item's key previews that item."""
    worker = worker_process()
    frames = [good_record(Modality.VIDEO, i) for i in range(6)]
    produce(settings, frames)
    assert wait_for(lambda: len(item_keys(settings, Modality.VIDEO)) == 6, 60), worker.log_tail()
    target = frames[3]
    form = aiohttp_form(example=target.value, modality="video", k="2")
    req = urllib.request.Request(worker.api_url + "/search", data=form.body, method="POST",
                                 headers={"Content-Type": form.content_type})
    with urllib.request.urlopen(req, timeout=60) as resp:
        found = json.loads(resp.read())
    best = found["results"][0]
    assert best["source"] == target.source and best["ts"] == target.ts_ms
    assert best["score"] == pytest.approx(1.0, abs=1e-3)
    with urllib.request.urlopen(worker.api_url + best["evidence"]["thumb_url"]) as resp:
        assert resp.headers["Content-Type"] == "image/jpeg" and resp.read()[:2] == b"\xff\xd8"

    status, body = call(worker.api_url, "POST", "/queries", {
        "id": "that-frame", "name": "that frame", "modality": "video",
        "positives": [{"item_key": best["key"]}], "threshold": 0.99, "cooldown_s": 0})
    assert status == 201, body
    status, prev = call(worker.api_url, "POST", "/queries/that-frame/preview", {})
    assert status == 200 and [m["key"] for m in prev["matches"]] == [best["key"]], prev


@dataclass
class _Form:
    body: bytes
    content_type: str


def aiohttp_form(example: bytes, **fields: str) -> _Form:
    """A multipart/form-data body with an `example` file part and plain fields."""
    boundary = "lookout-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="example"; filename="x.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode() + example + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return _Form(b"".join(parts), f"multipart/form-data; boundary={boundary}")


def test_alert_on_topic_finds_a_published_alert(settings: Settings):
    """The recovery scan of `publish_once` finds an alert sent before a crash, by id."""
    from aiokafka import AIOKafkaProducer

    from streams.alerting.alerts import alert_on_topic
    from streams.kafka.admin import TopicLayout, ensure_topic

    bootstrap = settings.resolved_kafka_bootstrap()
    topic = settings.topic("alerts")
    alert = _sample_alert()

    async def run() -> tuple[bool, bool, bool]:
        await ensure_topic(bootstrap, topic, TopicLayout(2))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            before = int(time.time() * 1000)
            for i in range(5):
                other = _sample_alert(f"lookout:item:logs:t:0:{100 + i}")
                await producer.send_and_wait(topic, other.to_bytes(), key=b"q")
            await producer.send_and_wait(topic, alert.to_bytes(), key=b"q")
        finally:
            await producer.stop()
        return (await alert_on_topic(bootstrap, topic, alert.alert_id, before - 5000),
                await alert_on_topic(bootstrap, topic, "0" * 32, before - 5000),
                await alert_on_topic(bootstrap, topic, alert.alert_id, before + 60_000))

    assert asyncio.run(run()) == (True, False, False)


def test_history_keeps_replayed_alerts_whose_event_time_is_older_than_retention(
    settings: Settings,
):
    """Retention trims the history by when alerts were recorded, not by their event time:
    an alert about a record replayed from two days ago stays listed while its record lives."""
    async def run() -> tuple[str, list[str]]:
        redis = Redis.from_url(settings.resolved_redis_url())
        store = AlertStore(redis, settings.topic_prefix, retention_s=3600)
        old = Alert.build(query_id="q", item_key="lookout:item:logs:t:0:9", query_name="q",
                          modality="logs", source="s", ts=int(time.time() * 1000) - 2 * 86_400_000,
                          score=0.9, threshold=0.5, severity="warning")

        async def send(topic: str, key: bytes, value: bytes) -> None:
            return None

        try:
            assert await store.publish_once(old, "t", send)
            return old.alert_id, [a.alert_id for a in await store.history(query_id="q")]
        finally:
            await redis.aclose()

    alert_id, listed = asyncio.run(run())
    assert listed == [alert_id]


def test_a_webhook_to_an_internal_address_is_refused_unless_allowed(
    settings: Settings, worker_process
):
    """SSRF guard: with no allowed networks, a webhook on loopback gets nothing; the alert
    itself is still raised and the refusal counted."""
    hook = WebhookReceiver().start()
    try:
        worker = worker_process(LOOKOUT_WEBHOOK_ALLOW_NETWORKS="")
        status, body = call(worker.api_url, "POST", "/queries", {
            "id": "disk", "name": "disk", "modality": "logs", "positives": [DISK],
            "threshold": 0.75, "webhooks": [{"url": hook.url}]})
        assert status == 201, body
        produce_logs(settings, [("disk-1", DISK)])
        done = wait_until_processed(settings, [worker], {Modality.LOGS: 1})
        assert done.alerts == 1, worker.log_tail()
        assert wait_until_delivered(settings) == 0, worker.log_tail()
        assert hook.received == []
        refused = metric_value(worker.metrics_text(), "lookout_webhook_deliveries_total",
                               'outcome="refused"')
        assert refused == 1, worker.log_tail()
    finally:
        hook.stop()


def test_search_source_filter_and_live_alerts_agree_including_case(
    settings: Settings, worker_process
):
    """One glob semantics (streams.core.sources): `web-*` matches web-1, not WEB-2, both in
    live matching and in /search (whose Redis TAG pre-filter alone is case-insensitive)."""
    worker = worker_process()
    status, body = call(worker.api_url, "POST", "/queries", {
        "id": "disk", "name": "disk", "modality": "logs", "positives": [DISK],
        "threshold": 0.75, "sources": ["web-*"]})
    assert status == 201, body
    produce_logs(settings, [("web-1", DISK), ("WEB-2", DISK), ("db-1", DISK)])
    done = wait_until_processed(settings, [worker], {Modality.LOGS: 3})
    assert done.alerts == 1, worker.log_tail()
    assert [a["source"] for a in wait_for_alerts(settings, 1)] == ["web-1"]
    status, found = call(worker.api_url, "GET",
                         f"/search?modality=logs&text={quote(DISK)}&sources=web-*&k=10")
    assert status == 200, found
    assert [r["source"] for r in found["results"]] == ["web-1"]


class _LeaseRunsOutOnRelease:
    """A Redis client on which the alert claim's lease runs out, and another worker takes
    it, right after the first command that touches the claim once `sent` is set: the
    releasing worker's check (GET, or an atomic script) happened, its delete did not."""

    def __init__(self, redis: Redis, other_token: str) -> None:
        self._redis = redis
        self._other = other_token
        self.sent = False
        self.taken_over = False

    def __getattr__(self, name: str):
        return getattr(self._redis, name)

    async def _after(self, key) -> None:
        key = key.decode() if isinstance(key, bytes) else str(key)
        if self.sent and not self.taken_over and key.endswith(":claim"):
            self.taken_over = True
            await self._redis.set(key, self._other, px=60_000)

    async def get(self, key):
        value = await self._redis.get(key)
        await self._after(key)
        return value

    def register_script(self, source: str):
        script = self._redis.register_script(source)

        async def run(keys=(), args=()):
            result = await script(keys=keys, args=args)
            await self._after(keys[0])
            return result
        return run


def test_releasing_a_claim_never_deletes_another_workers_claim(settings: Settings):
    """A publisher whose lease runs out while it releases must not delete the claim the
    next worker just took (that would let a third worker publish the same alert at once)."""

    async def run() -> bytes | None:
        redis = Redis.from_url(settings.resolved_redis_url())
        proxy = _LeaseRunsOutOnRelease(redis, "worker-b")
        store = AlertStore(proxy, settings.topic_prefix, 3600)

        async def send(topic: str, key: bytes, value: bytes) -> None:
            proxy.sent = True

        alert = _sample_alert("lookout:item:logs:t:0:11")
        try:
            assert await store.publish_once(alert, "alerts", send)
            assert proxy.taken_over
            return await redis.get(store.key(alert.alert_id) + ":claim")
        finally:
            await redis.aclose()

    assert asyncio.run(run()) == b"worker-b"


def test_a_zombie_workers_state_save_keeps_what_the_new_owner_saved(settings: Settings):
    """After a rebalance, a zombie worker computed a pair's incident state from what it
    loaded; the partition's new owner saved a newer state meanwhile. The zombie's save
    must not overwrite it: it decides again from the fresh state, keeping both items."""
    import redis as sync_redis

    rules = {"q": PolicyRule(min_hits=1, window_s=10, clear_s=5, hysteresis=0.02)}
    policy = AlertPolicy(rules, lambda _: 0.5)
    owner_items = [Candidate("q", "s", 1_000, "owner-item", 0.9)]
    zombie_items = [Candidate("q", "s", 60_000, "zombie-item", 0.9)]
    owner_state = policy.evaluate(owner_items, {})[1][("q", "s")]
    loads: list[dict] = []

    async def run() -> tuple[list, str]:
        redis = Redis.from_url(settings.resolved_redis_url())
        other = sync_redis.Redis.from_url(settings.resolved_redis_url())
        store = PolicyStateStore(redis, settings.topic_prefix, 3600)

        def zombie_decides(states: dict) -> tuple:
            loads.append(dict(states))
            if len(loads) == 1:  # the new owner saves between the zombie's load and save
                other.hset(store.key("q"), "s", owner_state)
            return policy.evaluate(zombie_items, states)

        try:
            decisions = await store.update({("q", "s")}, zombie_decides)
            return decisions, (await store.load([("q", "s")]))[("q", "s")]
        finally:
            other.close()
            await redis.aclose()

    decisions, saved = asyncio.run(run())
    assert [s[("q", "s")] for s in loads] == [None, owner_state]
    kept = {key for _, key, _, _ in json.loads(saved)["o"]}
    assert kept == {"owner-item", "zombie-item"}
    assert [d.candidate.item_key for d in decisions if d.action.kind == "open"] == [
        "zombie-item"]


def test_a_state_that_keeps_changing_gives_up_with_a_retryable_error(settings: Settings):
    async def run() -> int:
        redis = Redis.from_url(settings.resolved_redis_url())
        store = PolicyStateStore(redis, settings.topic_prefix, 3600)
        calls = 0

        def always_overtaken(states: dict) -> tuple:
            nonlocal calls
            calls += 1
            sync.hset(store.key("q"), "s", f"other-{calls}")
            return None, {("q", "s"): "mine"}

        try:
            with pytest.raises(PolicyStateConflict):
                await store.update([("q", "s")], always_overtaken, attempts=3)
            assert (await store.load([("q", "s")]))[("q", "s")] == "other-3"
            return calls
        finally:
            sync.close()
            await redis.aclose()

    import redis as sync_redis
    sync = sync_redis.Redis.from_url(settings.resolved_redis_url())
    assert asyncio.run(run()) == 3


def test_a_recreated_topic_raises_new_alerts_at_the_same_offsets(settings: Settings):
    """Issue 14.6: delete and create a topic again; its records start again at offset 0,
    so they have the item keys of the old ones. Their alerts get new ids (from the topic's
    new Kafka topic id): neither the old `published` flags nor the old incident state
    suppress them. The ids come through one admin client kept open across the recreation,
    as in a worker."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.alerting.incarnations import TopicIncarnations
    from streams.core.wire import item_key
    from streams.kafka.admin import TopicIds, TopicLayout, ensure_topic

    bootstrap = settings.resolved_kafka_bootstrap()
    topic = settings.topic("logs")
    policy = AlertPolicy({"q": PolicyRule(min_hits=1, window_s=10, clear_s=5)}, lambda _: 0.5)
    keys = [item_key("logs", topic, 0, offset, space="m:float32") for offset in (0, 1)]
    sent: list[str] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append(json.loads(value)["alert_id"])

    async def recreate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            while topic in await admin.list_topics():
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        await ensure_topic(bootstrap, topic, TopicLayout(1))

    async def raise_for(incarnations: TopicIncarnations, states: PolicyStateStore,
                        store: AlertStore, t0_ms: int) -> list[str]:
        incarnation = await incarnations.of(topic, 0, [0, 1])
        cands = [Candidate("q", "s", t0_ms + i * 60_000, key, 0.9, incarnation)
                 for i, key in enumerate(keys)]
        decisions = await states.update({("q", "s")}, lambda st: policy.evaluate(cands, st))
        ids = []
        for d in decisions:
            if d.action.kind == "open":
                alert = Alert.build(alert_id=d.action.alert_id, query_id="q",
                                    item_key=d.candidate.item_key, query_name="q",
                                    modality="logs", source="s", ts=d.candidate.ts_ms,
                                    score=0.9, threshold=0.5, severity="warning")
                if await store.publish_once(alert, "alerts", send):
                    ids.append(alert.alert_id)
        return ids

    async def run() -> tuple[list[str], list[str]]:
        await ensure_topic(bootstrap, topic, TopicLayout(1))
        redis = Redis.from_url(settings.resolved_redis_url())
        ids = TopicIds(bootstrap)
        await ids.connect()
        incarnations = TopicIncarnations(ids)
        states = PolicyStateStore(redis, settings.topic_prefix, 3600)
        store = AlertStore(redis, settings.topic_prefix, 3600)
        now = int(time.time() * 1000)
        try:
            before = await raise_for(incarnations, states, store, now - 600_000)
            await recreate()
            return before, await raise_for(incarnations, states, store, now - 300_000)
        finally:
            ids.close()
            await redis.aclose()

    before, after = asyncio.run(run())
    assert len(before) == 2 and len(after) == 2
    assert not set(before) & set(after)
    assert sent == before + after


def test_concurrent_incident_updates_of_one_alert_both_survive(settings: Settings):
    """Two workers update one alert's incident at once (one closes it, one records a merge):
    a read-merge-write as two commands kept only the last; the compare-and-set keeps both."""
    async def no_broker(topic: str, key: bytes, value: bytes) -> None:
        return None

    async def run() -> dict:
        clients = [Redis.from_url(settings.resolved_redis_url()) for _ in range(2)]
        stores = [AlertStore(c, settings.topic_prefix, 3600) for c in clients]
        alert = _sample_alert("lookout:item:logs:t:0:21")
        try:
            assert await stores[0].publish_once(alert, "alerts", no_broker)
            updates = [{"end": 2_000 + i, f"field_{i}": i} for i in range(20)]
            await asyncio.gather(*(stores[i % 2].update_incident(alert.alert_id, **u)
                                   for i, u in enumerate(updates)))
            stored = await stores[0].get(alert.alert_id)
            assert stored is not None
            return stored.incident or {}
        finally:
            for c in clients:
                await c.aclose()

    incident = asyncio.run(run())
    assert {f"field_{i}" for i in range(20)} <= set(incident), incident
