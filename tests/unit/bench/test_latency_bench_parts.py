"""The latency bench times each expected alert once, apart from the warm-up, and counts
what should not have fired."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.bench.latency import (
    AlertClock,
    bench_lines,
    pattern_line,
    percentiles_ms,
    split_latencies,
)


def test_every_nth_line_is_a_pattern_line_from_a_source_of_its_own() -> None:
    lines = bench_lines(100, match_every=10)
    pattern = [(src, line) for src, line in lines if src.startswith("pattern-")]
    assert len(lines) == 100 and len(pattern) == 10
    assert len({src for src, _ in pattern}) == 10  # one incident (one alert) each
    assert all("Disk failure" in line for _, line in pattern)
    assert not any("Disk failure" in line for src, line in lines if src.startswith("bg-"))


def test_pattern_lines_vary_like_a_kernels_would() -> None:
    assert len({pattern_line(i) for i in range(60)}) > 10


def test_an_alert_is_timed_from_its_send_and_only_its_first_copy_counts() -> None:
    clock = AlertClock(sent={"pattern-9": 100.0})
    clock.on_alert(100_120, {"source": "pattern-9"}, now=100.2)
    clock.on_alert(100_500, {"source": "pattern-9"}, now=100.9)  # a redelivery
    clock.on_alert(100_300, {"source": "bg-3"}, now=100.3)
    assert clock.done()
    assert clock.unexpected == ["bg-3"]
    steady = split_latencies(clock, start=90.0, warmup_s=5.0)["steady"]
    assert [round(x, 3) for x in steady["published"]] == [0.12]
    assert [round(x, 3) for x in steady["received"]] == [0.2]


def test_alerts_not_yet_received_keep_the_clock_waiting() -> None:
    clock = AlertClock(sent={"pattern-1": 1.0, "pattern-2": 2.0})
    clock.on_alert(1_100, {"source": "pattern-1"}, now=1.1)
    assert not clock.done()


@given(st.lists(st.floats(0, 100), min_size=1, max_size=50), st.floats(0, 100))
def test_matches_sent_in_the_first_seconds_are_warm_up_the_rest_steady(
        offsets: list[float], warmup_s: float) -> None:
    clock = AlertClock(sent={f"pattern-{i}": t for i, t in enumerate(offsets)})
    for source, sent in clock.sent.items():
        clock.on_alert(int((sent + 0.1) * 1000), {"source": source}, now=sent + 0.2)
    phases = split_latencies(clock, start=0.0, warmup_s=warmup_s)
    assert len(phases["warmup"]["received"]) == sum(t < warmup_s for t in offsets)
    assert len(phases["steady"]["received"]) == sum(t >= warmup_s for t in offsets)
    assert sorted(phases["all"]["received"]) == sorted(
        phases["warmup"]["received"] + phases["steady"]["received"])


@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_in_milliseconds(seconds: list[float]) -> None:
    q = percentiles_ms(seconds)
    assert q["n"] == len(seconds)
    assert q["p50_ms"] <= q["p90_ms"] <= q["p99_ms"] <= q["max_ms"]
    assert abs(q["max_ms"] - max(seconds) * 1000) <= 0.05


def test_no_alerts_give_no_percentiles() -> None:
    assert percentiles_ms([]) == {"n": 0}


def test_each_workers_latencies_are_its_own_pattern_lines() -> None:
    clock = AlertClock(sent={"pattern-1": 1.0, "pattern-2": 50.0})
    clock.on_alert(1_100, {"source": "pattern-1"}, now=1.2)
    clock.on_alert(50_300, {"source": "pattern-2"}, now=50.4)
    restarted = split_latencies(clock, start=49.0, warmup_s=5.0, sources={"pattern-2"})
    assert [round(x, 3) for x in restarted["warmup"]["received"]] == [0.4]
    assert restarted["steady"]["received"] == [] and len(restarted["all"]["received"]) == 1
