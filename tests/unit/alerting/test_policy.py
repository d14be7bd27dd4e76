"""The alert policy runs one incident tracker per (query, source), in event-time order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.alerting.incidents import incident_alert_id
from streams.alerting.policy import AlertPolicy, Candidate
from streams.queries.model import PolicyRule, StandingQuery

RULES = {"q": PolicyRule(min_hits=1, window_s=10, clear_s=5, hysteresis=0.02)}


def opened(decisions):
    return [d.action.alert_id for d in decisions if d.action.kind == "open"]


def test_sources_are_judged_separately_and_ids_come_from_the_first_item() -> None:
    policy = AlertPolicy(RULES, lambda _: 0.5)
    cands = [Candidate("q", "cam-1", 1000, "a", 0.9), Candidate("q", "cam-2", 1500, "b", 0.9),
             Candidate("q", "cam-1", 2000, "c", 0.9)]
    decisions, states = policy.evaluate(cands, {})
    assert opened(decisions) == [incident_alert_id("q", "a"), incident_alert_id("q", "b")]
    assert set(states) == {("q", "cam-1"), ("q", "cam-2")}


def test_saved_state_carries_the_incident_across_batches() -> None:
    policy = AlertPolicy(RULES, lambda _: 0.5)
    first, states = policy.evaluate([Candidate("q", "s", 1000, "a", 0.9)], {})
    second, changed = policy.evaluate([Candidate("q", "s", 3000, "b", 0.9)], states)
    assert len(opened(first)) == 1 and opened(second) == []
    assert changed  # the incident grew: its state must be saved again


def test_unknown_queries_are_ignored() -> None:
    decisions, states = AlertPolicy(RULES, lambda _: 0.5).evaluate(
        [Candidate("gone", "s", 1000, "a", 0.9)], {})
    assert decisions == [] and states == {}


def test_cooldown_lengthens_clear_and_defaults_are_small() -> None:
    q = StandingQuery(name="n", modality="logs", positives=["x"], cooldown_s=60, clear_s=10)
    assert PolicyRule.of(q).clear_s == 60
    d = StandingQuery(name="n", modality="logs", positives=["x"])
    assert d.threshold == "auto" and d.cooldown_s == 0 and PolicyRule.of(d).clear_s == 10


@given(st.lists(st.integers(0, 200), min_size=1, max_size=40, unique=True),
       st.randoms(use_true_random=False), st.integers(1, 5))
@settings(max_examples=100)
def test_batches_in_any_order_open_each_incident_once(times, rnd, n_batches) -> None:
    """Split shuffled hits into batches (state saved between them): never two alerts with
    the same id, and as many incidents as the sorted replay has."""
    policy = AlertPolicy(RULES, lambda _: 0.5)
    cands = [Candidate("q", "s", t * 1000, f"k{t}", 0.9) for t in times]
    reference = opened(policy.evaluate(cands, {})[0])
    rnd.shuffle(cands)
    states: dict = {}
    ids: list[str] = []
    merged: set[str] = set()  # late items may join two incidents that already alerted
    size = max(1, len(cands) // n_batches)
    for i in range(0, len(cands), size):
        decisions, changed = policy.evaluate(cands[i:i + size], states)
        states.update(changed)
        ids += opened(decisions)
        merged |= {d.action.alert_id for d in decisions if d.action.kind == "merge"}
    assert len(ids) == len(set(ids))
    assert len(set(ids) - merged) == len(reference)


def test_a_recreated_topics_repeated_position_is_a_new_alert() -> None:
    """The same item key (topic, partition, offset) in a new topic incarnation is a new
    item: a new incident with a new alert id, not a redelivery of the old one."""
    policy = AlertPolicy(RULES, lambda _: 0.5)
    old = Candidate("q", "s", 1000, "lookout:item:logs:t:0:0", 0.9, incarnation="id-1")
    new = Candidate("q", "s", 60_000, "lookout:item:logs:t:0:0", 0.9, incarnation="id-2")
    first, states = policy.evaluate([old], {})
    second, _ = policy.evaluate([new], states)
    assert opened(first) == [incident_alert_id("q", "lookout:item:logs:t:0:0@id-1")]
    assert opened(second) == [incident_alert_id("q", "lookout:item:logs:t:0:0@id-2")]
    again, _ = policy.evaluate([old], states)  # a true redelivery re-issues the same id
    assert opened(again) == opened(first)
