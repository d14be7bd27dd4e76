"""Composite queries across modalities and workers: a log query and a video query, two
workers in one consumer group, a composite alert exactly once per incident and site, also
across a SIGKILL of a worker."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka.partitioner.default import murmur2

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.wire import encode_headers
from tests.helpers import metric_value, wait_for
from tests.integration.alerting_helpers import alerts_on_topic, call, log_record
from tests.integration.pipeline_records import produce
from tests.integration.progress import uncommitted
from tests.integration.worker_fixtures import lookout_cli, started_together
from tests.records import InputRecord, jpeg_frame

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GLASS = "ALARM glass break sensor triggered"
PERSON = jpeg_frame(1000)
NOISE_LINES = ["user alice logged in from 10.1.2.3", "GET /api/orders 200 in 12 ms",
               "cache warmed with 1200 entries", "scheduled backup finished"]
#: Two partitions per input topic; the producer keys records by source, and these sources
#: hash to partition 0 (sensors) and 1 (cameras). Faust gives partition N of every input
#: topic to one worker, so with two workers the log member and the video member of a site
#: are consumed by different workers.
PARTITIONS = {"LOOKOUT_PARTITIONS": "2"}
SENSOR = {"lobby": "sensor-lobby", "dock": "dock-sensor"}
CAMERA = {"lobby": "cam-lobby", "dock": "cam-dock"}
SITES = {"sites": {site: [SENSOR[site], CAMERA[site]] for site in ("lobby", "dock")}}


def partition_of(source: str, partitions: int = 2) -> int:
    """Where the producer (kafka-python's default partitioner) puts a record of `source`."""
    return (murmur2(source.encode()) & 0x7FFFFFFF) % partitions


def frame(source: str, ts_ms: int, jpeg: bytes = PERSON) -> InputRecord:
    return InputRecord(Modality.VIDEO, source, ts_ms, jpeg, encode_headers("image/jpeg", ts_ms))


def register(api: str, tmp_path: Path) -> None:
    """The members through the API, the composite and the sites through the CLI."""
    for body in (
        {"id": "glass", "name": "glass", "modality": "logs", "positives": [GLASS],
         "threshold": 0.9},
        {"id": "person", "name": "person", "modality": "video", "threshold": 0.99,
         "positives": [{"payload_b64": base64.b64encode(PERSON).decode(),
                        "content_type": "image/jpeg"}]},
    ):
        status, answer = call(api, "POST", "/queries", body)
        assert status == 201, answer
    sites = tmp_path / "sites.yaml"
    sites.write_text(yaml.safe_dump(SITES))
    for argv in (["sites", "apply", str(sites)],
                 ["query", "add", "intrusion", "--all-of", "glass", "--all-of", "person",
                  "--within", "10", "--group-by", "site", "--suppress-members",
                  "--severity", "critical"]):
        done = lookout_cli(*argv, api=api)
        assert done.returncode == 0, done.stderr
    shown = json.loads(lookout_cli("query", "show", "intrusion", api=api).stdout)
    assert shown["mode"] == "all_of" and shown["members"] == ["glass", "person"], shown
    bad = lookout_cli("query", "add", "x", "--all-of", "glass", "--all-of", "ghost", "--within",
                  "5", api=api)
    assert bad.returncode == 1 and "unknown member queries ['ghost']" in bad.stderr


def incident(site: str, t_ms: int, gap_ms: int = 3000) -> list[InputRecord]:
    """Glass at `t_ms`, the person `gap_ms` later, with noise around them."""
    noise = [log_record(SENSOR[site], line, t_ms + 100 * i)
             for i, line in enumerate(NOISE_LINES)]
    frames = [frame(CAMERA[site], t_ms + 500 * i, jpeg_frame(2000 + i)) for i in range(3)]
    return [log_record(SENSOR[site], GLASS, t_ms), *noise, *frames,
            frame(CAMERA[site], t_ms + gap_ms)]


def all_committed(settings: Settings) -> bool:
    topics = [settings.input_topic(m) for m in (Modality.LOGS, Modality.VIDEO)]
    return uncommitted(settings, topics) == 0


def composite_alerts(settings: Settings) -> list[dict[str, Any]]:
    return [a for a in alerts_on_topic(settings) if a["modality"] == "composite"]


def consumed_by(worker) -> dict[str, int]:
    text = worker.metrics_text()
    return {m.value: int(metric_value(text, "lookout_records_consumed_total",
                                      f'modality="{m.value}"'))
            for m in (Modality.LOGS, Modality.VIDEO)}


def test_composite_fires_once_per_incident_across_workers_and_a_sigkill(
        settings: Settings, worker_process, tmp_path: Path):
    for site in SITES["sites"]:
        assert [partition_of(SENSOR[site]), partition_of(CAMERA[site])] == [0, 1]
    a, b = started_together(worker_process, 2, **PARTITIONS)

    def shared() -> bool:  # the group rebalanced over both before anything is sent
        shares = [w.get("/readyz")[1].get("assigned_partitions", 0) for w in (a, b)]
        return shares == [3, 3]  # logs, video, audio x 2 partitions, split evenly

    assert wait_for(shared, 60), (a.get("/readyz"), b.get("/readyz"))
    register(a.api_url, tmp_path)
    assert wait_for(lambda: b.get("/composites/intrusion")[0] == 200
                    and b.get("/sites")[1] == a.get("/sites")[1], 10), b.log_tail()
    t0 = int(time.time() * 1000) - 600_000

    # Incident 1 at the lobby; distractors at the dock: glass alone, then a person 30 s
    # after it (too far apart), and a person in the lobby 60 s later with no glass.
    records = [*incident("lobby", t0), log_record(SENSOR["dock"], GLASS, t0),
               frame(CAMERA["dock"], t0 + 30_000), frame(CAMERA["lobby"], t0 + 60_000)]
    produce(settings, sorted(records, key=lambda r: r.modality.value))
    assert wait_for(lambda: all_committed(settings), 120), (a.log_tail(), b.log_tail())
    first = composite_alerts(settings)
    assert len(first) == 1, first
    assert alerts_on_topic(settings) == first  # suppress_members: the members stay quiet
    alert = first[0]
    assert alert["query_id"] == "intrusion" and alert["site"] == "lobby"
    members = alert["evidence"]["members"]
    assert [(m["query_id"], m["source"], m["ts"]) for m in members] == [
        ("glass", SENSOR["lobby"], t0), ("person", CAMERA["lobby"], t0 + 3000)]
    assert members[0]["text"] == GLASS and members[1]["thumb_url"].startswith("/items/")
    # The members' hits met across workers: one consumed every log, the other every frame.
    split = sorted([consumed_by(a), consumed_by(b)], key=lambda c: c["logs"])
    assert split == [{"logs": 0, "video": 6}, {"logs": 6, "video": 0}], split

    # Incident 2 at the dock; SIGKILL a worker as soon as its alert is on the topic.
    produce(settings, incident("dock", t0 + 100_000))
    assert wait_for(lambda: len(composite_alerts(settings)) >= 2, 60), (a.log_tail(),
                                                                        b.log_tail())
    b.kill()
    redelivered = not all_committed(settings)
    c = worker_process(**PARTITIONS)  # joins the group: the partitions are split again
    assert wait_for(lambda: all_committed(settings), 120), (a.log_tail(), c.log_tail())
    print(f"SIGKILL before the commit (batches redelivered): {redelivered}")

    # Incident 3, later, at the lobby again: a new incident, a new alert.
    produce(settings, incident("lobby", t0 + 200_000))
    assert wait_for(lambda: len(composite_alerts(settings)) >= 3 and all_committed(settings),
                    120), (a.log_tail(), c.log_tail())
    alerts = composite_alerts(settings)
    ids = [x["alert_id"] for x in alerts]
    assert len(ids) == len(set(ids)) == 3, alerts
    assert [(x["site"], x["ts"]) for x in alerts] == [
        ("lobby", t0 + 3000), ("dock", t0 + 103_000), ("lobby", t0 + 203_000)]
    status, history = call(c.api_url, "GET", "/alerts?query=intrusion")
    assert status == 200 and {x["alert_id"] for x in history["alerts"]} == set(ids), history
    # The preview over retained history runs the same rule: the same three incidents.
    preview = json.loads(lookout_cli("query", "preview", "intrusion", "--json",
                                     api=c.api_url).stdout)
    assert [(f["group"], f["ts"]) for f in preview["would_fire"]] == [
        (x["site"], x["ts"]) for x in alerts], preview
