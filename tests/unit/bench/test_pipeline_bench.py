"""The pipeline bench counts what the worker says it indexed, per modality."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from encoders.modality import Modality
from streams.bench.pipeline import (
    DEFAULT_N,
    DEFAULT_ROUNDS,
    PipelineBenchRow,
    _indexed,
    bracketed_ratios,
    next_poll_s,
    pipeline_ratios,
)
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


def test_the_counter_is_read_rarely_far_from_the_end_and_often_near_it() -> None:
    # 100 items/s so far: 1900 missing is 19 s away, 2 missing is 20 ms away
    assert next_poll_s(100, 2000, 1.0) == 0.5
    assert next_poll_s(1998, 2000, 19.98) == 0.02
    assert next_poll_s(0, 2000, 3.0) == 0.5  # no rate yet: the longest wait


@given(done=st.integers(0, 10_000), n=st.integers(1, 10_000),
       elapsed=st.floats(0, 1e4, allow_nan=False))
def test_every_wait_is_within_its_bounds(done: int, n: int, elapsed: float) -> None:
    assert 0.02 <= next_poll_s(min(done, n), n, elapsed) <= 0.5


@given(n=st.integers(100, 100_000), rate=st.floats(1, 10_000))
def test_the_end_is_seen_within_the_shortest_wait_or_a_quarter_of_the_last_gap(
        n: int, rate: float) -> None:
    """Polling a steady worker through a run of at least a second (bench runs last 10 s
    or more): the read after the last item lands at most max(20 ms, a quarter of the time
    the missing items took) late, never a whole 0.5 s."""
    assume(n / rate >= 1.0)
    t, done = 0.0, 0
    while done < n:
        t += next_poll_s(done, n, t)
        before = done
        done = min(n, int(t * rate))
    finish = n / rate
    assert t - finish <= max(0.02, (n - before) / rate / 4) + 1e-9


def test_each_pipeline_run_has_a_bare_run_before_and_after_it() -> None:
    assert DEFAULT_ROUNDS >= 2
    assert bracketed_ratios([90.0, 95.0], [100.0, 100.0, 90.0]) == [0.9, 1.0]
    with pytest.raises(ValueError, match="need 3 bare rates"):
        bracketed_ratios([90.0, 95.0], [100.0, 100.0])


@given(k=st.floats(0.1, 2.0), start=st.floats(10.0, 1000.0), drift=st.floats(-0.05, 0.05),
       rounds=st.integers(1, 6))
def test_a_steady_drift_of_the_boxs_speed_cancels_out(
        k: float, start: float, drift: float, rounds: int) -> None:
    """The box runs at start * (1 + drift * t) items/s at step t; bare runs at even steps,
    pipeline runs (at k times the bare speed of their moment) at odd steps: every round
    reads k, where comparing each with the bare run after it alone would not."""
    def speed(t: int) -> float:
        return start * (1 + drift * t)
    bare = [speed(2 * i) for i in range(rounds + 1)]
    pipeline = [k * speed(2 * i + 1) for i in range(rounds)]
    assert bracketed_ratios(pipeline, bare) == pytest.approx([k] * rounds, rel=1e-9)


def _row(kind: str, encoders: str, rate: float, round_: int | None = None) -> PipelineBenchRow:
    return PipelineBenchRow("logs", kind, encoders, "x", 100, 100 / rate, rate, round=round_)


def test_the_ratios_take_the_median_round_and_keep_every_round() -> None:
    rows = [_row("bare", "default", 100, 0), _row("pipeline", "default", 80, 1),
            _row("bare", "default", 100, 1), _row("pipeline", "default", 99, 2),
            _row("bare", "default", 98, 2), _row("pipeline", "default", 95, 3),
            _row("bare", "default", 92, 3),
            _row("pipeline", "null", 950), _row("bare", "null", 1900),
            _row("serial_script", "default", 90)]
    ratios = pipeline_ratios(rows, "logs")
    assert ratios["pipeline_default_over_bare_default_rounds"] == [0.8, 1.0, 1.0]
    assert ratios["pipeline_default_over_bare_default"] == 1.0
    assert ratios["pipeline_default_over_serial_script"] == round(95 / 90, 3)
    assert ratios["pipeline_null_over_pipeline_default"] == 10.0
    assert ratios["pipeline_null_over_bare_null"] == 0.5
    assert "pipeline_default_over_bare_lanes" not in ratios  # one lane: no such rows


def test_bare_runs_on_the_lanes_get_their_own_bracketed_ratio() -> None:
    rows = [_row("bare", "default", 100, 0), _row("bare_lanes", "default", 120, 0),
            _row("pipeline", "default", 110, 1),
            _row("bare", "default", 100, 1), _row("bare_lanes", "default", 100, 1),
            _row("pipeline", "null", 950), _row("bare", "null", 1900),
            _row("serial_script", "default", 90)]
    ratios = pipeline_ratios(rows, "logs")
    assert ratios["pipeline_default_over_bare_default_rounds"] == [1.1]
    assert ratios["pipeline_default_over_bare_lanes_rounds"] == [1.0]
    assert ratios["pipeline_default_over_bare_lanes"] == 1.0
