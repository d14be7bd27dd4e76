"""Counts over the last hour, from counters that only ever grow.

The console shows "dead letters, last 60 min" and throughput per modality for the whole
worker group without Prometheus. Each worker samples its own cumulative counters on its
status heartbeat, turns the growth since the previous sample into per-minute buckets
(`MinuteRing`), and publishes the ring's sum; the status route adds the workers up.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

MINUTE_MS = 60_000


@dataclass
class MinuteRing:
    """Per-minute sums of named amounts, kept for the last `minutes` minutes only.

    Minutes are whole minutes since the epoch (`ms // MINUTE_MS`). An amount for a minute
    that has already left the window is dropped; at most `minutes` buckets are held.
    """

    minutes: int = 60
    _buckets: dict[int, Counter[str]] = field(default_factory=dict, init=False)

    def add(self, minute: int, amounts: Mapping[str, float]) -> None:
        """Count `amounts` in `minute` (zero amounts make no bucket)."""
        newest = max([minute, *self._buckets])
        if minute <= newest - self.minutes or not any(amounts.values()):
            self._evict(newest)
            return
        bucket = self._buckets.setdefault(minute, Counter())
        for key, amount in amounts.items():
            if amount:
                bucket[key] += amount
        self._evict(newest)

    def totals(self, minute: int) -> dict[str, float]:
        """Sum per name over the `minutes` minutes ending with `minute` (included)."""
        out: Counter[str] = Counter()
        for m, bucket in self._buckets.items():
            if minute - self.minutes < m <= minute:
                out.update(bucket)
        return dict(out)

    def _evict(self, newest: int) -> None:
        for m in [m for m in self._buckets if m <= newest - self.minutes]:
            del self._buckets[m]

    def __len__(self) -> int:
        return len(self._buckets)


def growth(previous: Mapping[str, float], current: Mapping[str, float]) -> dict[str, float]:
    """How much each cumulative counter grew since `previous` (a counter that went down was
    reset: all of its current value is new)."""
    out = {}
    for key, now in current.items():
        before = previous.get(key, 0.0)
        out[key] = now - before if now >= before else now
    return out


@dataclass
class RecentRate:
    """Per-second rate of cumulative counters over the samples of the last `span_s` seconds."""

    span_s: float = 60.0
    _samples: deque[tuple[float, dict[str, float]]] = field(default_factory=deque, init=False)

    def sample(self, t_s: float, totals: Mapping[str, float]) -> dict[str, float]:
        """Record the totals at monotonic time `t_s`; the rate per name since the oldest
        sample still within `span_s` (0 until there are two samples)."""
        self._samples.append((t_s, dict(totals)))
        while len(self._samples) > 2 and self._samples[1][0] <= t_s - self.span_s:
            self._samples.popleft()
        t0, first = self._samples[0]
        if t_s <= t0:
            return {key: 0.0 for key in totals}
        return {key: round(grown / (t_s - t0), 3)
                for key, grown in growth(first, totals).items()}
