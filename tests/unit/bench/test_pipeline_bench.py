"""The pipeline bench counts what the worker says it indexed, per modality."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from encoders.modality import Modality
from streams.bench.pipeline import DEFAULT_N, _indexed
from streams.core.metrics import Metrics


def test_the_bench_reads_the_workers_own_indexed_counter() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.items_indexed.labels(modality="logs").inc(1234)
    metrics.items_indexed.labels(modality="video").inc(7)
    worker = SimpleNamespace(
        metrics_text=lambda: generate_latest(metrics.registry).decode())
    assert _indexed(worker, Modality.LOGS) == 1234
    assert _indexed(worker, Modality.VIDEO) == 7
    assert _indexed(worker, Modality.AUDIO) == 0


def test_a_worker_that_does_not_answer_counts_nothing() -> None:
    assert _indexed(SimpleNamespace(metrics_text=lambda: ""), Modality.LOGS) == 0


def test_runs_are_long_enough_to_mean_something() -> None:
    assert DEFAULT_N >= 2000
