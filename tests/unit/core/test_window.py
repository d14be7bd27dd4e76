"""The per-minute ring behind "dead letters, last 60 min" and the throughput rates."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.window import MinuteRing, RecentRate, growth

KEYS = st.sampled_from(["deadletters/logs/decode", "indexed/audio", "consumed/video"])
#: ("add", name, amount) or ("tick", minutes to move on)
STEPS = st.lists(st.one_of(
    st.tuples(st.just("add"), KEYS, st.integers(0, 1000)),
    st.tuples(st.just("tick"), st.integers(0, 90)),
), max_size=120)


@given(steps=STEPS, window=st.integers(1, 60))
def test_any_increments_and_minute_rollovers_sum_to_what_was_added_within_the_window(
        steps: list[tuple], window: int) -> None:
    ring = MinuteRing(minutes=window)
    minute, added = 29_000_000, []
    for step in steps:
        if step[0] == "tick":
            minute += step[1]
        else:
            ring.add(minute, {step[1]: step[2]})
            added.append((minute, step[1], step[2]))
        expected: dict[str, float] = {}
        for m, key, amount in added:
            if minute - window < m <= minute and amount:
                expected[key] = expected.get(key, 0) + amount
        assert ring.totals(minute) == expected
        assert len(ring) <= window


def test_an_amount_for_a_minute_already_out_of_the_window_is_dropped() -> None:
    ring = MinuteRing(minutes=60)
    ring.add(1000, {"a": 1})
    ring.add(940, {"a": 5})  # 60 minutes before the newest one: outside
    ring.add(941, {"a": 2})
    assert ring.totals(1000) == {"a": 3}
    assert ring.totals(1060) == {}


def test_growth_of_cumulative_counters_counts_a_reset_as_all_new() -> None:
    assert growth({"a": 5, "b": 2}, {"a": 7, "b": 1, "c": 4}) == {"a": 2, "b": 1, "c": 4}


def test_the_rate_is_the_growth_over_the_samples_of_the_last_span() -> None:
    rate = RecentRate(span_s=60)
    assert rate.sample(0.0, {"logs": 0}) == {"logs": 0.0}
    assert rate.sample(10.0, {"logs": 50}) == {"logs": 5.0}
    rate.sample(70.0, {"logs": 350})
    # the sample at 0 s fell out of the span; 10 s..100 s: 900 - 50 over 90 s
    assert rate.sample(100.0, {"logs": 900}) == {"logs": round(850 / 90, 3)}
