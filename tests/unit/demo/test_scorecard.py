"""The scorecard judges alerts against ground truth the same way for the demo and the tests."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.demo.scorecard import ObservedAlert, TruthEvent, quantile, score_alerts

DISK = TruthEvent("disk-full", "api-1", 10.0, 20.0)
CAT = TruthEvent("cat", "cam-1", 30.0, 35.0)


def test_an_alert_inside_the_event_catches_it():
    card = score_alerts([DISK], [ObservedAlert("disk-full", "api-1", 12.0)])
    assert card.recall == 1.0
    assert card.precision == 1.0


def test_an_alert_from_another_source_is_a_false_positive():
    card = score_alerts([DISK], [ObservedAlert("disk-full", "api-2", 12.0)])
    assert card.recall == 0.0
    assert card.precision == 0.0


def test_tolerance_widens_the_event_window():
    late = ObservedAlert("disk-full", "api-1", 21.5)
    assert score_alerts([DISK], [late], tolerance_s=2.0).recall == 1.0
    assert score_alerts([DISK], [late], tolerance_s=1.0).recall == 0.0


def test_repeated_alerts_for_one_event_count_once_for_recall_but_each_for_precision():
    alerts = [ObservedAlert("disk-full", "api-1", t) for t in (11, 15, 40)]
    card = score_alerts([DISK, CAT], alerts)
    assert card.patterns["disk-full"].caught == 1
    assert card.patterns["disk-full"].alerts == 3
    assert card.patterns["disk-full"].precision == 2 / 3
    assert card.patterns["cat"].recall == 0.0


def test_patterns_left_out_are_not_scored():
    card = score_alerts([DISK, CAT], [ObservedAlert("cat", "cam-1", 31)], pattern_ids=["cat"])
    assert set(card.patterns) == {"cat"}
    assert card.recall == 1.0


def test_no_alerts_means_precision_is_unknown_not_perfect():
    assert score_alerts([DISK], []).precision is None


def test_nearest_rank_quantile():
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.99) == 4.0
    assert quantile([], 0.5) is None


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1), st.floats(0, 1))
def test_quantile_is_an_observed_value_within_range(values, q):
    result = quantile(values, q)
    assert result in values
    assert min(values) <= result <= max(values)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["s1", "s2"]), st.floats(0, 100)),
        max_size=30,
    )
)
def test_scores_stay_between_zero_and_one(raw_alerts):
    events = [TruthEvent("a", "s1", 10, 20), TruthEvent("b", "s2", 50, 60)]
    card = score_alerts(events, [ObservedAlert(q, s, t) for q, s, t in raw_alerts])
    for p in card.patterns.values():
        assert p.correct_alerts <= p.alerts
        assert p.caught <= p.events
        for value in (p.recall, p.precision):
            assert value is None or 0.0 <= value <= 1.0
