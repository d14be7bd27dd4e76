"""Incidents instead of a blinding cooldown: one alert per run of matches of a (query, source).

Per (query, source), in event time, an incident is a run of items scoring at or above
`threshold - hysteresis` with no gap of `clear_s` or more, confirmed by `min_hits` items at
or above `threshold` within `window_s`; it raises ONE alert (id from the query and the
incident's first item), and a new crossing after it cleared is a new alert, so a noise
blip never hides a real event that starts after it ended.

The incidents are a function of the SET of observations (connected components in event
time), not of their arrival order: late items that bridge two incidents that already
alerted merge them (the later alert is marked merged into the first), so the number of live
alerts is the same for every arrival order within `max_lateness_s`. A redelivered item
re-issues the alert it confirmed (same id: publishing is idempotent) and nothing else, so a
crash between saving the state and publishing loses nothing. State is JSON, kept in Redis
per (query, source) by `streams.alerting.policy.PolicyStateStore`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal


def incident_alert_id(query_id: str, first_item_key: str) -> str:
    """Deterministic alert id of an incident: the query and the incident's first item."""
    return hashlib.sha256(f"{query_id}\x00incident\x00{first_item_key}".encode()).hexdigest()[
        :32]


@dataclass(frozen=True)
class IncidentRule:
    """The incident knobs of one query (seconds; scores in the query's score space)."""

    threshold: float
    hysteresis: float = 0.02
    min_hits: int = 1
    window_s: float = 10.0
    clear_s: float = 10.0
    max_lateness_s: float = 600.0


@dataclass(frozen=True)
class IncidentAction:
    """What the worker publishes: "open" a new alert, "merge" (the alert `alert_id` is
    withdrawn into `into`: late items joined two incidents), "close" (update the alert with
    its end and peak)."""

    kind: Literal["open", "merge", "close"]
    alert_id: str
    t: float
    item_key: str
    score: float
    into: str | None = None
    end_t: float | None = None
    start_t: float | None = None


@dataclass
class _Obs:
    t: float
    key: str
    score: float
    hit: bool


@dataclass
class _Incident:
    alert_id: str
    start_t: float
    end_t: float
    peak: float
    closed: bool = False
    hit_key: str = ""  # the item whose arrival confirmed it (and raised its alert)
    hit_t: float = 0.0
    hit_score: float = 0.0

    def opened(self) -> IncidentAction:
        return IncidentAction("open", self.alert_id, self.hit_t, self.hit_key, self.hit_score,
                              start_t=self.start_t)


@dataclass
class IncidentTracker:
    """Incidents of one (query, source) in event time; state serialisable to JSON.

    Kept: the items at or above threshold - hysteresis within `max_lateness_s` of the newest
    event time seen, and the incidents that already alerted. Items below the sustain level
    are not kept: event-time gaps, not "below" items, close incidents (a silent source
    closes its incident too).
    """

    query_id: str
    rule: IncidentRule
    obs: list[_Obs] = field(default_factory=list)
    incidents: list[_Incident] = field(default_factory=list)
    watermark: float = float("-inf")

    # -- persistence --------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({
            "o": [[o.t, o.key, o.score, int(o.hit)] for o in self.obs],
            "i": [[i.alert_id, i.start_t, i.end_t, i.peak, int(i.closed), i.hit_key, i.hit_t,
                   i.hit_score] for i in self.incidents],
            "w": None if self.watermark == float("-inf") else self.watermark,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, query_id: str, rule: IncidentRule, raw: str | bytes | None
                  ) -> IncidentTracker:
        tr = cls(query_id, rule)
        if not raw:
            return tr
        d = json.loads(raw)
        tr.obs = [_Obs(float(t), str(k), float(s), bool(h)) for t, k, s, h in d.get("o", [])]
        tr.incidents = [_Incident(str(a), float(s), float(e), float(p), bool(c), str(k),
                                  float(ht), float(hs))
                        for a, s, e, p, c, k, ht, hs in d.get("i", [])]
        w = d.get("w")
        tr.watermark = float("-inf") if w is None else float(w)
        return tr

    # -- the rule -----------------------------------------------------------------------
    def _components(self) -> list[list[_Obs]]:
        """Runs of kept items with no event-time gap of clear_s or more (order-free)."""
        comps: list[list[_Obs]] = []
        for o in sorted(self.obs, key=lambda o: (o.t, o.key)):
            if comps and o.t - comps[-1][-1].t < self.rule.clear_s:
                comps[-1].append(o)
            else:
                comps.append([o])
        return comps

    def _confirming_hit(self, comp: list[_Obs]) -> _Obs | None:
        """The hit completing the first `min_hits` hits within `window_s`, if any."""
        hits = [o for o in comp if o.hit]
        k = max(self.rule.min_hits, 1)
        for j in range(k - 1, len(hits)):
            if hits[j].t - hits[j - k + 1].t <= self.rule.window_s:
                return hits[j]
        return None

    def observe(self, t: float, item_key: str, score: float) -> list[IncidentAction]:
        """Take one scored item (any order, redeliveries allowed); the actions to publish."""
        rule = self.rule
        if any(o.key == item_key for o in self.obs):
            # Redelivery: counted already. If it confirmed an incident, say so again: the
            # alert id is the same, so publishing is a no-op unless a crash lost it.
            return [i.opened() for i in self.incidents if i.hit_key == item_key]
        if t < self.watermark - rule.max_lateness_s:
            return []  # beyond the lateness bound: its incident is gone from the state
        self.watermark = max(self.watermark, t)
        if score >= rule.threshold - rule.hysteresis:
            self.obs.append(_Obs(float(t), item_key, float(score), score >= rule.threshold))
        actions: list[IncidentAction] = []
        comps = self._components()
        for comp in comps:
            c0, c1 = comp[0].t, comp[-1].t
            inside = [i for i in self.incidents if c0 <= i.start_t <= c1 or c0 <= i.end_t <= c1]
            peak_o = max(comp, key=lambda o: (o.score, -o.t))
            if not inside:
                hit = self._confirming_hit(comp)
                if hit is None:
                    continue
                # The alert names the item whose arrival confirmed the incident (`hit` is
                # the hit completing min_hits; with late items that is not always this one).
                inc = _Incident(incident_alert_id(self.query_id, comp[0].key), c0, c1,
                                peak_o.score, hit_key=item_key, hit_t=t,
                                hit_score=max(score, hit.score) if hit.key != item_key
                                else score)
                self.incidents.append(inc)
                actions.append(inc.opened())
                continue
            inside.sort(key=lambda i: (i.start_t, i.alert_id))
            keep = inside[0]
            for other in inside[1:]:
                self.incidents.remove(other)
                actions.append(IncidentAction("merge", other.alert_id, other.start_t, "",
                                              other.peak, into=keep.alert_id))
            grew = c0 < keep.start_t or c1 > keep.end_t or peak_o.score > keep.peak
            keep.start_t, keep.end_t = min(keep.start_t, c0), max(keep.end_t, c1)
            keep.peak = max(keep.peak, peak_o.score)
            if grew:
                keep.closed = False
        for inc in self.incidents:
            if not inc.closed and self.watermark - inc.end_t >= rule.clear_s:
                inc.closed = True
                actions.append(IncidentAction("close", inc.alert_id, inc.start_t, "",
                                              inc.peak, end_t=inc.end_t))
        self._prune()
        return actions

    def _prune(self) -> None:
        horizon = self.watermark - self.rule.max_lateness_s
        self.obs = [o for o in self.obs if o.t >= horizon]
        self.incidents = [i for i in self.incidents if i.end_t >= horizon]

    def live_alerts(self) -> list[str]:
        """Ids of the incidents that alerted and were not merged away."""
        return [i.alert_id for i in self.incidents]
