"""The pipeline bench counts what the worker says it indexed, per modality."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import assume, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from encoders.modality import Modality
from streams.bench.pipeline import DEFAULT_N, _indexed, next_poll_s
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
