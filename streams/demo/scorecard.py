"""Score alerts against a scenario's ground truth: precision, recall and latency per pattern.

The demo and the alerting tests both judge Lookout this way, so the rule lives in one
place: an alert is correct when it names the event's pattern, comes from the event's
source, and its event time falls inside the event (widened by `tolerance_s`). An event is
caught when at least one correct alert points at it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TruthEvent:
    """One known event of the scenario, in seconds from the scenario start."""

    pattern_id: str
    source: str
    start_s: float
    end_s: float
    label: str = ""


@dataclass(frozen=True)
class ObservedAlert:
    """What the scorecard needs of an alert: which query, where, when (scenario seconds)."""

    query_id: str
    source: str
    t_s: float
    latency_s: float | None = None


@dataclass
class PatternScore:
    pattern_id: str
    events: int = 0
    caught: int = 0
    alerts: int = 0
    correct_alerts: int = 0

    @property
    def recall(self) -> float | None:
        return self.caught / self.events if self.events else None

    @property
    def precision(self) -> float | None:
        return self.correct_alerts / self.alerts if self.alerts else None


@dataclass
class Scorecard:
    patterns: dict[str, PatternScore] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        events = sum(p.events for p in self.patterns.values())
        return sum(p.caught for p in self.patterns.values()) / events if events else None

    @property
    def precision(self) -> float | None:
        alerts = sum(p.alerts for p in self.patterns.values())
        correct = sum(p.correct_alerts for p in self.patterns.values())
        return correct / alerts if alerts else None

    def latency_quantile(self, q: float) -> float | None:
        return quantile(self.latencies_s, q)

    def as_dict(self) -> dict:
        return {
            "recall": self.recall,
            "precision": self.precision,
            "latency_p50_s": self.latency_quantile(0.5),
            "latency_p99_s": self.latency_quantile(0.99),
            "patterns": {
                pid: {
                    "events": p.events,
                    "caught": p.caught,
                    "alerts": p.alerts,
                    "correct_alerts": p.correct_alerts,
                    "recall": p.recall,
                    "precision": p.precision,
                }
                for pid, p in sorted(self.patterns.items())
            },
        }


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation): the reported figure is a real observation."""
    if not values:
        return None
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def matching_event(
    events: Sequence[TruthEvent], alert: ObservedAlert, tolerance_s: float = 2.0
) -> int | None:
    """Index of the first event this alert is correct for (same pattern and source, event
    time inside the event widened by `tolerance_s`), or None for a false alarm."""
    for i, ev in enumerate(events):
        if (
            ev.pattern_id == alert.query_id
            and ev.source == alert.source
            and ev.start_s - tolerance_s <= alert.t_s <= ev.end_s + tolerance_s
        ):
            return i
    return None


def score_alerts(
    events: Iterable[TruthEvent],
    alerts: Iterable[ObservedAlert],
    *,
    tolerance_s: float = 2.0,
    pattern_ids: Iterable[str] | None = None,
) -> Scorecard:
    """Match alerts to events. Only patterns in `pattern_ids` (default: all in the truth) count."""
    events = list(events)
    wanted = set(pattern_ids) if pattern_ids is not None else {e.pattern_id for e in events}
    card = Scorecard(patterns={pid: PatternScore(pid) for pid in sorted(wanted)})
    caught: set[int] = set()
    for alert in alerts:
        if alert.query_id not in wanted:
            continue
        score = card.patterns[alert.query_id]
        score.alerts += 1
        if alert.latency_s is not None:
            card.latencies_s.append(alert.latency_s)
        i = matching_event(events, alert, tolerance_s)
        if i is not None:
            score.correct_alerts += 1
            caught.add(i)
    for i, ev in enumerate(events):
        if ev.pattern_id in wanted:
            card.patterns[ev.pattern_id].events += 1
            if i in caught:
                card.patterns[ev.pattern_id].caught += 1
    return card
