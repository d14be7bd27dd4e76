"""Ingest -> alert latency at a steady log rate, through a real worker.

A paced producer sends log lines at `rate` per second for `seconds`: realistic background
lines (`LogCorpus`) and, every `match_every`-th line, a line of a watched pattern from a
source of its own (each is then its own incident, so each raises exactly one alert). One
standing query watches the pattern. A consumer on the alerts topic notes when each alert
is published (the alert record's Kafka timestamp, set by the worker's producer) and when
it reaches a subscriber (this process's poll); both are measured from the moment the line
was handed to the producer, on the same clock.

What it shows is the pipeline's added latency at a rate far below its throughput: batching
(the adaptive batcher flushes as soon as the encoder is idle), the encode of small
batches, the upsert, matching and the alert's own write. The first `warmup_s` of matches
are reported apart: a fresh worker meets every log template for the first time and embeds
it. Then the worker is restarted on the same topics and Redis and the stream goes on for
`restart_seconds`: a restarted worker finds its group's templates in Redis (the shared
template cache), and its own warm-up is reported as `restarted_latency`.
The query's threshold is set halfway between the best background score and the worst
pattern score, computed here with the worker's own encoder, so the bench measures latency,
not detection quality; alerts that should not have fired, or that never came, are
counted and reported.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from encoders.modality import MODALITIES, Modality
from streams.api.client import ApiClient
from streams.config.settings import Settings
from streams.core.errors import LookoutError
from streams.worker.process import WorkerProcess, free_port, http_get

Progress = Callable[[str], None]

DEFAULT_RATE = 50.0
DEFAULT_SECONDS = 60.0
DEFAULT_MATCH_EVERY = 10
DEFAULT_WARMUP_S = 5.0
DEFAULT_RESTART_S = 20.0

PATTERN = "md raid array degraded: disk failure, device disabled"
"""What the bench's standing query watches (one text positive)."""


def pattern_line(i: int) -> str:
    """A line of the watched pattern; its numbers vary like a real kernel's would."""
    return (f"kernel: md/raid:md{i % 4}: Disk failure on sd{'abcdef'[i % 6]}{1 + i % 3}, "
            f"disabling device. Operation continuing on {2 + i % 5} devices")


@dataclass
class AlertClock:
    """When each expected alert was sent, published and received (seconds, epoch)."""

    sent: dict[str, float] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_alert(self, record_ts_ms: int, alert: dict[str, Any], now: float) -> None:
        source = str(alert.get("source"))
        with self.lock:
            if source not in self.sent:
                self.unexpected.append(source)
                return
            self.published.setdefault(source, record_ts_ms / 1000)
            self.received.setdefault(source, now)

    def done(self) -> bool:
        with self.lock:
            return len(self.received) >= len(self.sent)


def percentiles_ms(seconds: list[float]) -> dict[str, float | int]:
    """n, p50, p90, p99 and max of latencies given in seconds, as milliseconds."""
    if not seconds:
        return {"n": 0}
    a = np.asarray(seconds) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p90_ms": round(float(np.percentile(a, 90)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1),
            "max_ms": round(float(a.max()), 1)}


def split_latencies(clock: AlertClock, start: float, warmup_s: float,
                    sources: set[str] | None = None) -> dict[str, dict[str, list[float]]]:
    """Per phase (warmup, steady, and all of them) and kind (published, received):
    latencies in seconds, of the pattern lines from `sources` (default: all)."""
    out: dict[str, dict[str, list[float]]] = {
        phase: {"published": [], "received": []} for phase in ("warmup", "steady", "all")}
    for source, sent in clock.sent.items():
        if sources is not None and source not in sources:
            continue
        phase = "warmup" if sent - start < warmup_s else "steady"
        for part in (phase, "all"):
            if source in clock.published:
                out[part]["published"].append(clock.published[source] - sent)
            if source in clock.received:
                out[part]["received"].append(clock.received[source] - sent)
    return out


def threshold_between(settings: Settings, background: list[str], matches: list[str]) -> dict:
    """Score both sets against the pattern with the worker's log encoder: the threshold is
    halfway between the best background and the worst match (refused if they overlap)."""
    from streams.worker.encoders import apply_torch_threads, build_modality_encoder

    apply_torch_threads(settings)
    enc = build_modality_encoder(settings, Modality.LOGS, settings.encoder_spec(Modality.LOGS))
    query = enc.encode_text([PATTERN])[0]
    payloads = [line.encode() for line in background + matches]
    vecs = enc.encode_payloads(payloads, ["text/plain"] * len(payloads))
    scores = (vecs @ query).tolist()
    best_bg, worst_match = max(scores[:len(background)]), min(scores[len(background):])
    if best_bg >= worst_match:
        raise LookoutError(f"the bench pattern does not separate from the background with "
                           f"{enc.model_id} (background up to {best_bg:.3f}, pattern lines "
                           f"down to {worst_match:.3f})")
    return {"threshold": round((best_bg + worst_match) / 2, 4),
            "best_background": round(best_bg, 4), "worst_match": round(worst_match, 4)}


def _consume_alerts(settings: Settings, topic: str, clock: AlertClock,
                    stop: threading.Event) -> None:
    """Read the alerts topic as a subscriber would, with a short fetch wait (the broker's
    default of 500 ms would be measured as latency)."""
    from kafka import KafkaConsumer

    from streams.config.kafka_security import kafka_python_kwargs

    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.resolved_kafka_bootstrap().split(","),
        auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=5,
        **kafka_python_kwargs(settings))
    try:
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.time()
                for rec in records:
                    clock.on_alert(rec.timestamp, json.loads(rec.value), now)
    finally:
        consumer.close()


def _produce_paced(settings: Settings, topic: str, lines: list[tuple[str, str]], rate: float,
                   clock: AlertClock, progress: Progress) -> float:
    """Send (source, line) pairs at `rate` per second, each at its slot (never in a burst
    to catch up); pattern lines' send times go into `clock`. Returns the start time."""
    from kafka import KafkaProducer

    from streams.config.kafka_security import kafka_python_kwargs
    from streams.core.wire import encode_headers

    producer = KafkaProducer(bootstrap_servers=settings.resolved_kafka_bootstrap().split(","),
                             acks="all", linger_ms=0, **kafka_python_kwargs(settings))
    # The producer's own first metadata fetch for the topic (~100 ms), paid once by any
    # producer before its first record reaches Kafka, is not the pipeline's latency.
    producer.partitions_for(topic)
    start = time.time()
    try:
        for i, (source, line) in enumerate(lines):
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)  # pacing the producer, not waiting for a result
            now = time.time()
            if source.startswith("pattern-"):
                with clock.lock:
                    clock.sent[source] = now
            producer.send(topic, key=source.encode(), value=line.encode(),
                          headers=encode_headers("text/plain", int(now * 1000)))
            if i and i % int(rate * 10) == 0:
                progress(f"latency: {i}/{len(lines)} lines sent")
        producer.flush()
    finally:
        producer.close(timeout=10)
    return start


def bench_lines(n: int, match_every: int, seed: int = 0) -> list[tuple[str, str]]:
    """(source, line): background from the realistic corpus; every `match_every`-th a
    pattern line from a source of its own."""
    from streams.bench.log_corpus import LogCorpus

    background = LogCorpus(seed=seed).lines(n)
    return [(f"pattern-{i}", pattern_line(i)) if i % match_every == match_every - 1
            else (f"bg-{i % 16}", background[i]) for i in range(n)]


@dataclass
class WorkerRun:
    """One worker's part of the bench: when its lines started, and where its log lines'
    vectors came from (`lookout_log_template_cache_total`, read before it stopped)."""

    start: float
    sources: set[str]
    template_cache: dict[str, float]


def _template_cache(api_url: str) -> dict[str, float]:
    from streams.core.metrics import parse_counters

    counts = parse_counters(http_get(api_url + "/metrics")[1].decode(),
                            "lookout_log_template_cache_total", label="result")
    return {result: counts.get(result, 0.0) for result in ("local", "shared", "computed")}


def _worker_run(settings: Settings, env: dict[str, str], port: int, log: Path, topic: str,
                lines: list[tuple[str, str]], rate: float, clock: AlertClock,
                before_sending: Callable[[], None], progress: Progress,
                timeout_s: float) -> WorkerRun:
    """Start a worker, let `before_sending` set up, send `lines` at `rate`, wait for their
    alerts, read its cache counts and stop it."""
    worker = WorkerProcess.start(env, f"http://127.0.0.1:{port}", log)
    try:
        worker.wait_ready(timeout_s, poll_s=0.05)
        before_sending()
        start = _produce_paced(settings, topic, lines, rate, clock, progress)
        deadline = time.monotonic() + 30
        while not clock.done() and time.monotonic() < deadline:
            worker.check_alive()
            time.sleep(0.05)  # polling our own consumer's tally, not standing in for a result
        cache = _template_cache(worker.api_url)
    finally:
        worker.stop()
    return WorkerRun(start, {src for src, _ in lines if src.startswith("pattern-")}, cache)


def run_latency_bench(settings: Settings, *, rate: float = DEFAULT_RATE,
                      seconds: float = DEFAULT_SECONDS, match_every: int = DEFAULT_MATCH_EVERY,
                      warmup_s: float = DEFAULT_WARMUP_S,
                      restart_seconds: float = DEFAULT_RESTART_S,
                      progress: Progress | None = None, timeout_s: float = 300.0) -> dict:
    """Start a worker on topics of its own, watch the pattern, send, and time the alerts;
    then (unless `restart_seconds` is 0) restart it on the same topics and Redis and go on
    sending the same stream: a fresh worker and a restarted one, side by side."""
    from encoders.benchmark import machine_info
    from streams.bench.pipeline import drop_indexes, worker_env

    progress = progress or (lambda _msg: None)
    first_n = int(rate * seconds)
    lines = bench_lines(first_n + int(rate * restart_seconds), match_every)
    separation = threshold_between(
        settings, [line for src, line in lines if not src.startswith("pattern-")][:2000],
        [line for src, line in lines if src.startswith("pattern-")][:200])
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    specs = dict.fromkeys(MODALITIES, "null") | {
        Modality.LOGS: settings.encoder_spec(Modality.LOGS)}
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"lookout-{prefix}.log"
    env = worker_env(settings, prefix, port, specs)
    topic = f"{prefix}.{settings.input_topic(Modality.LOGS).split('.', 1)[1]}"
    progress(f"latency: worker on {prefix}, threshold {separation['threshold']}")
    clock, stop = AlertClock(), threading.Event()
    reader = threading.Thread(target=_consume_alerts,
                              args=(settings, f"{prefix}.alerts", clock, stop), daemon=True)

    def watch() -> None:
        ApiClient(f"http://127.0.0.1:{port}").call("POST", "/queries", {
            "id": "bench-raid", "name": "RAID disk failure", "modality": "logs",
            "positives": [PATTERN], "threshold": separation["threshold"],
            "min_hits": 1, "cooldown_s": 0})
        reader.start()

    runs: dict[str, WorkerRun] = {}
    try:
        runs["fresh"] = _worker_run(settings, env, port, log, topic, lines[:first_n], rate, clock,
                                    watch, progress, timeout_s)
        if len(lines) > first_n:
            progress("latency: the same worker restarted on the same stream")
            runs["restarted"] = _worker_run(settings, env, port, log, topic, lines[first_n:], rate,
                                            clock, lambda: None, progress, timeout_s)
    finally:
        stop.set()
        drop_indexes(settings, prefix)
        _drop_shared_templates(settings, prefix)
        if reader.is_alive():
            reader.join(timeout=5)
    return {
        "machine": machine_info(settings.device),
        "rate_lines_per_s": rate, "seconds": seconds, "restart_seconds": restart_seconds,
        "lines": len(lines), "pattern_lines": len(clock.sent),
        "alerts_received": len(clock.received),
        "alerts_missing": len(clock.sent) - len(clock.received),
        "unexpected_alerts": len(clock.unexpected), "warmup_s": warmup_s,
        "query": separation | {"pattern": PATTERN, "encoder": specs[Modality.LOGS]},
        "torch_threads": os.environ.get("LOOKOUT_TORCH_THREADS", "torch default"),
        "latency": _latency_report(clock, runs["fresh"], warmup_s),
        **({"restarted_latency": _latency_report(clock, runs["restarted"], warmup_s)}
           if "restarted" in runs else {}),
        "template_cache": {name: run.template_cache for name, run in runs.items()},
    }


def _latency_report(clock: AlertClock, run: WorkerRun, warmup_s: float) -> dict:
    phases = split_latencies(clock, run.start, warmup_s, run.sources)
    return {phase: {kind: percentiles_ms(v) for kind, v in kinds.items()}
            for phase, kinds in phases.items()}


def _drop_shared_templates(settings: Settings, prefix: str) -> None:
    """The bench's shared template vectors go with its indexes."""
    from redis import Redis

    client = Redis.from_url(settings.resolved_redis_url())
    try:
        keys = list(client.scan_iter(match=f"{prefix}:logvec:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
