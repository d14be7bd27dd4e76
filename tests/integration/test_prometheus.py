"""The shipped dashboards and alerting rules work against a real Prometheus and a real worker.

A `lookout worker` (trivial encoders) processes a small scenario on the embedded stack:
good frames, audio chunks and log lines, corrupt records (dead letters), and a standing
query whose matches fire alerts delivered to a local webhook. The Debian package's
Prometheus scrapes it every second with the repo's rules loaded. Then every PromQL
expression of every dashboard panel must parse and return data, and every rule must parse
and evaluate without error.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from encoders.modality import MODALITIES, Modality
from streams.config.settings import Settings
from streams.core.wire import encode_headers
from tests.dashboard_exprs import RULES_FILE, metric_names, panel_exprs, rules
from tests.helpers import free_port, metric_value, wait_for
from tests.integration.pipeline_records import produce
from tests.records import InputRecord, bad_records, good_record

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")
SCRAPE_S = 1
RATE_INTERVAL = "15s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval
RANGE = "10m"  # the dashboard time range ($__range)
#: Metrics a CPU-only worker cannot have; panels reading only these may be empty here.
CUDA_ONLY = {"lookout_gpu_memory_bytes": "set by CUDA workers only; this worker runs on CPU"}
MATCH_TEXT = "disk full on /var/lib/app: write failed, no space left on device"


@dataclass
class Prometheus:
    """A running Prometheus and its HTTP API."""

    proc: subprocess.Popen
    port: int
    log_path: Path

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:  # 400/422 carry the PromQL error as JSON
            return json.loads(e.read())

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


class WebhookReceiver(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        WebhookReceiver.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_url() -> Iterator[str]:
    WebhookReceiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), WebhookReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Factory: start Prometheus scraping one worker port, with the repo's rules loaded."""
    if PROMETHEUS is None:
        pytest.skip("Prometheus is not installed (Debian package `prometheus`; "
                    "`make prometheus` installs it)")
    started: list[Prometheus] = []

    def start(worker_port: int) -> Prometheus:
        port = free_port()
        config = {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [{
                "job_name": "lookout",
                "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
            }],
        }
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        log_path = tmp_path / "prometheus.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config_path}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
            )
        prom = Prometheus(proc, port, log_path)
        started.append(prom)

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{prom.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2):
                    return True
            except OSError:
                return False

        assert wait_for(ready, timeout_s=60, interval_s=0.3), prom.log_tail()
        return prom

    yield start
    for prom in started:
        prom.proc.terminate()
        try:
            prom.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prom.proc.kill()
            prom.proc.wait(timeout=10)


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def scenario(now_ms: int) -> list[InputRecord]:
    """Good records of every modality stamped 'now', the corrupt ones, and lines to match."""
    records = []
    for i in range(24):
        for m in MODALITIES:
            rec = good_record(m, i)
            records.append(InputRecord(rec.modality, rec.source, now_ms,
                                       rec.value, encode_headers(_ctype(rec), now_ms)))
    records += bad_records()
    records += [
        InputRecord(Modality.LOGS, "app-disk", now_ms, MATCH_TEXT.encode(),
                    encode_headers("text/plain", now_ms))
        for _ in range(3)
    ]
    return records


def _ctype(rec: InputRecord) -> str:
    return dict(rec.headers)["content-type"].decode()


def worker_metric(worker: Any, name: str, labels: str = "") -> float:
    """Sum of a metric's samples (those with `labels`) on the worker's /metrics right now."""
    status, text = worker.get("/metrics")
    assert status == 200, text
    return metric_value(str(text), name, labels)


def has_finite_value(result: dict[str, Any]) -> bool:
    data = result["data"]
    if data["resultType"] == "matrix":
        values = [v for series in data["result"] for _, v in series["values"]]
    elif data["resultType"] == "vector":
        values = [series["value"][1] for series in data["result"]]
    else:
        values = [data["result"][1]]
    return any(math.isfinite(float(v)) for v in values)


def test_every_panel_and_rule_works_against_a_real_prometheus(
    settings: Settings, worker_process: Any, prometheus_for: Any, webhook_url: str
) -> None:
    worker = worker_process()
    prom = prometheus_for(int(worker.env["LOOKOUT_WEB_PORT"]))
    started_at = time.time()

    status, body = post_json(worker.api_url + "/queries", {
        "id": "disk-full", "name": "disk full", "modality": "logs",
        "positives": [MATCH_TEXT], "threshold": 0.6, "clear_s": 0.5,  # each wave: an incident
        "severity": "critical", "webhooks": [{"url": webhook_url}],
    })
    assert status in (200, 201), body
    status, body = post_json(worker.api_url + "/queries", {
        "id": "disk-full-auto", "name": "disk full (auto threshold)", "modality": "logs",
        "positives": [MATCH_TEXT]})
    assert status in (200, 201), body
    assert wait_for(lambda: worker_metric(worker, "lookout_standing_queries") >= 2, 60), \
        worker.log_tail()

    # Two waves: a histogram or labelled counter is born with its first observation, so
    # rate() sees an increase only from the second wave on (after Prometheus has scraped
    # the series once). A live stream is always in its "second wave".
    per_wave = 24 * len(MODALITIES)
    for wave in (1, 2):
        produce(settings, scenario(int(time.time() * 1000)))

        def processed(wave: int = wave) -> bool:
            return (worker_metric(worker, "lookout_items_indexed_total") >= wave * per_wave
                    and worker_metric(worker, "lookout_deadletters_total")
                    >= wave * len(bad_records())
                    and worker_metric(worker, "lookout_alerts_total",
                                      'query_id="disk-full"') >= wave
                    and worker_metric(worker, "lookout_webhook_deliveries_total",
                                      'outcome="delivered"') >= wave)

        assert wait_for(processed, timeout_s=120, interval_s=0.5), worker.log_tail()
        newest = get_json(worker.api_url + "/alerts?query=disk-full&limit=1")["alerts"][0]
        status, body = post_json(worker.api_url + f"/alerts/{newest['alert_id']}/feedback",
                                 {"verdict": "confirmed", "by": "test"})
        assert status == 200 and body["verdict"] == "confirmed", body

        def scraped(wave: int = wave) -> bool:
            res = prom.api("query", query="sum(lookout_items_indexed_total)")
            result = res["data"]["result"]
            return bool(result) and float(result[0]["value"][1]) >= wave * per_wave

        assert wait_for(scraped, timeout_s=60, interval_s=0.5), prom.log_tail()
    assert WebhookReceiver.received, "the webhook got no alert"

    def expected_exported() -> bool:  # the auto query's refresh has measured its rate
        return "lookout_query_expected_alerts_per_day{" in worker.metrics_text()

    assert wait_for(expected_exported, timeout_s=30, interval_s=0.5), (
        get_json(worker.api_url + "/queries/disk-full-auto")["calibration"])
    last_event = time.time()

    def sampled_after_last_event() -> bool:  # a few more samples, for rate()
        result = prom.api("query", query='timestamp(up{job="lookout"})')["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= last_event + 3 * SCRAPE_S

    assert wait_for(sampled_after_last_event, timeout_s=30, interval_s=0.5), prom.log_tail()

    end = time.time()
    failures = []
    for target in panel_exprs(rate_interval=RATE_INTERVAL, range_=RANGE):
        where = f"{target.dashboard} panel {target.panel_id} {target.panel_title!r} " \
                f"{target.ref_id}: {target.expr}"
        res = prom.api("query_range", query=target.expr, start=started_at - 5, end=end,
                       step=SCRAPE_S)
        if res.get("status") != "success":
            failures.append(f"{where}\n  -> {res.get('error')}")
            continue
        if has_finite_value(res):
            continue
        if metric_names(target.expr) <= set(CUDA_ONLY):
            continue
        failures.append(f"{where}\n  -> no data")
    assert not failures, "\n".join(failures)

    for rule in rules():
        res = prom.api("query", query=rule["expr"])
        assert res.get("status") == "success", f"rule {rule['alert']}: {res.get('error')}"

    def rules_evaluated() -> bool:
        groups = prom.api("rules")["data"]["groups"]
        evaluated = [r for g in groups for r in g["rules"]]
        return len(evaluated) == len(rules()) and all(
            r.get("health") == "ok" for r in evaluated)

    assert wait_for(rules_evaluated, timeout_s=30, interval_s=0.5), \
        json.dumps(prom.api("rules")["data"], indent=1)[:4000]

    up = prom.api("query", query='up{job="lookout"}')["data"]["result"]
    assert [float(s["value"][1]) for s in up] == [1.0]
    firing = prom.api("alerts")["data"]["alerts"]
    assert not [a for a in firing if a["labels"]["alertname"] == "LookoutWorkerDown"]
