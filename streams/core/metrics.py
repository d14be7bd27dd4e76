"""Every Prometheus metric Lookout exports, declared once against a registry passed in.

Label cardinality is bounded: modality (3), stage (decode/encode/index/match), reason
(a short fixed vocabulary), query id (bounded by the number of standing queries), and
topic/partition for lag. Source ids are never labels unless `source_label_limit` allows.

Error counters start at zero for every label set known in advance: a labelled counter
has no series until its first `.labels()` call, and `rate()` (so every error panel and
alert) sees nothing until a series exists and has been scraped twice. The registry also
carries prometheus_client's standard process, platform and GC collectors, so the usual
`process_*` / `python_*` panels and alerts see the worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily

from encoders.modality import MODALITIES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
STAGES = ("decode", "encode", "index", "match", "alert")
#: `reason` of dead letters: the stage that rejected the record (streams.ingest.records'
#: STAGE_* constants; tests/unit/observability/test_metrics.py keeps the two equal).
DEADLETTER_REASONS = ("wire_format", "decode", "encode", "error")
#: `op` of the Redis operations `retry_until_done` counts (it is passed `metrics=`).
REDIS_OPS = ("ensure", "upsert")
#: `outcome` of webhook deliveries (streams.alerting counts exactly these).
WEBHOOK_OUTCOMES = ("delivered", "retried", "rejected", "failed", "duplicate_skipped",
                    "refused", "handed_over", "too_old")


class TemplateCacheCounts(Protocol):
    """What a log encoder's template cache counts (`encoders.log_text.EmbeddingCache`)."""

    hits: int
    shared_hits: int
    misses: int


class TemplateCacheCollector:
    """`lookout_log_template_cache_total{modality, result}`: where log lines' vectors came
    from, read from the caches' own counts at each scrape (they live in the encoder, below
    the metrics, and are counted under its lock)."""

    def __init__(self, caches: dict[str, TemplateCacheCounts]) -> None:
        self.caches = caches

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "lookout_log_template_cache", "Log lines by where their template's vector came "
            "from: this worker's cache (local), the group's cache in Redis (shared), or the "
            "model (computed).", labels=["modality", "result"])
        for modality, cache in self.caches.items():
            for result, value in (("local", cache.hits), ("shared", cache.shared_hits),
                                  ("computed", cache.misses)):
                family.add_metric([modality, result], value)
        yield family


@dataclass
class Metrics:
    """The worker's metrics; tests build one against a fresh `CollectorRegistry`."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.records_consumed = Counter(
            "lookout_records_consumed_total", "Input records taken from Kafka.",
            ["modality"], registry=r,
        )
        self.items_indexed = Counter(
            "lookout_items_indexed_total", "Items embedded and upserted into Redis.",
            ["modality"], registry=r,
        )
        self.deadletters = Counter(
            "lookout_deadletters_total", "Records sent to the dead-letter topic, by reason.",
            ["modality", "reason"], registry=r,
        )
        self.deadletters_refused = Counter(
            "lookout_deadletters_refused_total",
            "Dead letters Kafka refused for good (logged at ERROR with their position and "
            "reason; the partition moves on).", ["modality", "reason"], registry=r,
        )
        self.batch_size = Histogram(
            "lookout_batch_size", "Records per micro-batch.",
            ["modality"], buckets=BATCH_BUCKETS, registry=r,
        )
        self.stage_seconds = Histogram(
            "lookout_stage_seconds", "Time a micro-batch spends in each stage.",
            ["modality", "stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.ingest_to_indexed_seconds = Histogram(
            "lookout_ingest_to_indexed_seconds",
            "From the record's event timestamp to its vector being in Redis.",
            ["modality"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.ingest_to_alert_seconds = Histogram(
            "lookout_ingest_to_alert_seconds",
            "From the record's event timestamp to its alert being published.",
            ["modality"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self._query_metrics(r)
        self._start_error_counters_at_zero()
        if r is not REGISTRY:  # the client's global registry has them already
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def watch_template_caches(self, caches: dict[str, TemplateCacheCounts]) -> None:
        """Export the log encoders' template cache counts (by modality)."""
        if caches:
            self.registry.register(TemplateCacheCollector(caches))

    def _start_error_counters_at_zero(self) -> None:
        """Create every known label set now, so error rates are 0 rather than absent."""
        for modality in MODALITIES:
            for reason in DEADLETTER_REASONS:
                self.deadletters.labels(modality=modality.value, reason=reason)
                self.deadletters_refused.labels(modality=modality.value, reason=reason)
        for op in REDIS_OPS:
            self.redis_errors.labels(op=op)
            self.redis_retries.labels(op=op)
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome=outcome)

    def _query_metrics(self, r: CollectorRegistry) -> None:
        """Standing queries, their thresholds and their alerts."""
        self.query_threshold = Gauge(
            "lookout_query_threshold", "Threshold in force per standing query (auto or fixed).",
            ["query_id"], registry=r,
        )
        self.query_background_items = Gauge(
            "lookout_query_background_items",
            "Background scores behind an auto threshold (its sample size).",
            ["query_id"], registry=r,
        )
        self.query_expected_alerts = Gauge(
            "lookout_query_expected_alerts_per_day",
            "False alarms per watched source a day that the background expects at the auto "
            "threshold (tail model; the empirical rate while it is still on its prior).",
            ["query_id"], registry=r,
        )
        self.query_feedback = Counter(
            "lookout_query_feedback_total", "Verdicts people gave on alerts, by query.",
            ["query_id", "verdict"], registry=r,
        )
        self.query_precision = Gauge(
            "lookout_query_precision",
            "Confirmed / judged alerts of a query, from feedback (latest verdict per alert).",
            ["query_id"], registry=r,
        )
        self.alerts = Counter(
            "lookout_alerts_total", "Alerts published, by standing query and severity.",
            ["query_id", "severity"], registry=r,
        )
        self.match_scores = Histogram(
            "lookout_match_score", "Best score per item and standing query that passed filters.",
            ["query_id"], buckets=SCORE_BUCKETS, registry=r,
        )
        self.standing_queries = Gauge(
            "lookout_standing_queries", "Enabled standing queries.", ["modality"], registry=r,
        )
        self._runtime_metrics(r)

    def _runtime_metrics(self, r: CollectorRegistry) -> None:
        """Kafka lag, Redis errors, observers, webhooks, encoders and the worker itself."""
        self.consumer_lag = Gauge(
            "lookout_consumer_lag", "Records behind the log end, per assigned partition.",
            ["topic", "partition"], registry=r,
        )
        self.redis_errors = Counter(
            "lookout_redis_errors_total", "Redis operations that failed.", ["op"], registry=r,
        )
        self.redis_retries = Counter(
            "lookout_redis_retries_total", "Redis operations retried after a failure.",
            ["op"], registry=r,
        )
        self.observer_failures = Counter(
            "lookout_observer_failures_total",
            "Batch observer calls given up on after their retries (a bug, not an outage): "
            "the items stay indexed, their matches and alerts are skipped.",
            ["stage"], registry=r,
        )
        self.encoder_failures = Counter(
            "lookout_encoder_failures_total",
            "Encoder calls that failed for the device's sake: out_of_memory (the batch is "
            "split), device (a device error) or batch_failed (every record crashed); the "
            "last two pause consumption until a batch embeds again.",
            ["modality", "kind"], registry=r,
        )
        self.webhook_deliveries = Counter(
            "lookout_webhook_deliveries_total", "Webhook delivery attempts by outcome.",
            ["outcome"], registry=r,
        )
        self.webhook_backlog = Gauge(
            "lookout_webhook_backlog",
            "Alert records this worker has yet to deliver to webhooks (its partitions of the "
            "alerts topic).", registry=r,
        )
        self.encoder_info = Gauge(
            "lookout_encoder_info", "Encoder loaded per modality (value is always 1).",
            ["modality", "model", "device"], registry=r,
        )
        self.gpu_memory_bytes = Gauge(
            "lookout_gpu_memory_bytes", "CUDA memory allocated by this worker.",
            ["device"], registry=r,
        )
        self.worker_up = Gauge(
            "lookout_worker_up", "1 while the worker's agents are running.", registry=r,
        )
        self.startup_seconds = Gauge(
            "lookout_worker_startup_seconds",
            "Seconds each start-up phase took (phases overlap; `ready` is the total).",
            ["phase"], registry=r,
        )


def parse_counters(text: str, name: str, label: str = "modality") -> dict[str, float]:
    """Sum of a labelled metric per value of `label`, from a worker's /metrics text (what
    the demo and the pipeline bench watch a worker subprocess by)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels:
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def counter_total(text: str, name: str) -> float:
    """Sum of a counter over all its label sets (0 when it has none yet)."""
    return sum(parse_counters(text, name).values())
