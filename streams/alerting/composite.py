"""Evaluating composite queries: member hits in, composite incidents out, in event time.

Per (composite, group) a `CompositeTracker` keeps the member hits of the last
`within_s + max_lateness_s` seconds of event time. A hit h COMPLETES the rule when the hits
in the closed window [h.t - within_s, h.t] satisfy it with h last: `all_of` every member
has a hit there; `any_of` h's member has; `sequence` there is a chain of hits of the
members in order with non-decreasing event times ending at h (arrival order plays no
part). With `score`, the fused score of the best such hits must also reach `threshold`.
Both edges are inclusive: hits exactly `within_s` apart fire.

A member hit only takes part once its member's own `min_hits` rule holds for it: at least
`min_hits` hits of that member from the hit's source within the member's `window_s` ending
at it (the item and the ones before it), as a plain query needs before it calls anything a
match. So one stray item that the member itself would never alert on (audio-crash wants 2
chunks within 4 s) cannot complete a composite on its own.

Whether a hit completes depends only on the SET of hits (adding hits never undoes a
completion), so the completions are the same for every arrival order. They are then judged
by the one incident policy (`streams.alerting.incidents.IncidentTracker`, min_hits 1,
clear_s = the composite's cooldown): completions less than `cooldown_s` apart are one
incident and raise ONE alert, whose id comes from the composite, the group and the
incident's first completing member item; a late hit that bridges two incidents merges
them, exactly as for plain queries. A redelivered hit re-issues the alerts it completed
(same id), and nothing else, so saving the state before publishing loses nothing on a crash.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.alerting.incidents import IncidentAction, IncidentRule, IncidentTracker
from streams.queries.composite import CompositeMode, CompositeQuery, FusionScore
from streams.queries.model import RegisteredQuery

Pair = tuple[str, str]
"""(composite id, group)."""
#: Hits later than this behind the newest one of their group are dropped (as incidents do).
MAX_LATENESS_S = 600.0
#: Hits kept per member and group: a member matching every frame of a long scene must not
#: grow the Redis value without bound (the best `within_s` window is what matters).
MAX_HITS_PER_MEMBER = 200


def composite_scope(composite_id: str, group: str) -> str:
    return f"{composite_id}\x00{group}"


@dataclass(frozen=True)
class MemberHit:
    """An item scoring at or above a member's hit threshold, with what shows it."""

    query_id: str
    uid: str
    item_key: str
    source: str
    modality: str
    t: float
    score: float
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        """One item can be a hit of several members: the pair identifies the hit."""
        return f"{self.query_id}/{self.uid}"


@dataclass(frozen=True)
class CompositeRule:
    """What the evaluation needs of a composite query (pure, no I/O)."""

    id: str
    mode: CompositeMode
    members: tuple[str, ...]
    within_s: float
    clear_s: float
    weights: tuple[float, ...] = ()
    score: FusionScore | None = None
    threshold: float | None = None
    max_lateness_s: float = MAX_LATENESS_S
    #: Per member, in `members` order: (min_hits, window_s) of the member query; empty:
    #: every hit counts on its own.
    confirm: tuple[tuple[int, float], ...] = ()

    @classmethod
    def of(cls, q: CompositeQuery, confirm: Mapping[str, tuple[int, float]] | None = None
           ) -> CompositeRule:
        """`confirm`: member id -> its query's (min_hits, window_s); missing: (1, 0)."""
        confirm = confirm or {}
        return cls(q.id, q.mode, tuple(q.member_ids), float(q.within_s), float(q.clear_s),
                   tuple(float(m.weight) for m in q.members), q.score, q.threshold,
                   confirm=tuple(confirm.get(m, (1, 0.0)) for m in q.member_ids))

    def needs(self, member: str) -> tuple[int, float]:
        """(min_hits, window_s) a hit of `member` needs to take part."""
        if not self.confirm or member not in self.members:
            return 1, 0.0
        return self.confirm[self.members.index(member)]

    @property
    def reach_s(self) -> float:
        """How far after a hit the hits it may complete or confirm can lie."""
        return self.within_s + max((w for _, w in self.confirm), default=0.0)

    def fuse(self, best: dict[str, float]) -> float:
        """Late fusion of each member's best score (absent members count 0)."""
        scores = [best.get(m, 0.0) for m in self.members]
        if self.score == FusionScore.MEAN:
            return sum(scores) / len(scores)
        if self.score == FusionScore.WEIGHTED:
            weights = self.weights or (1.0,) * len(scores)
            return sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights)
        return max(best.values(), default=0.0)


@dataclass(frozen=True)
class CompositeFiring:
    """An incident action of a composite, with the member hits that satisfied the rule
    (`witness`, event-time order; for "open" only) and their fused score."""

    composite_id: str
    group: str
    action: IncidentAction
    witness: tuple[MemberHit, ...] = ()
    score: float = 0.0


def member_rules(members: Iterable[RegisteredQuery]) -> dict[str, tuple[int, float]]:
    """Each member query's own (min_hits, window_s): what a hit of it needs to take part
    (`CompositeRule.of`'s `confirm`; the live stage and preview both build it here)."""
    return {rq.id: (int(rq.query.min_hits), float(rq.query.window_s)) for rq in members}


def _witness(rule: CompositeRule, h: MemberHit, confirmed: list[MemberHit]
             ) -> tuple[MemberHit, ...] | None:
    """The member hits that make `h` complete the rule (None: it does not); `confirmed`:
    the hits that take part (`_confirmed`), `h` among them."""
    if h.query_id not in rule.members:
        return None
    window = [x for x in confirmed if h.t - rule.within_s <= x.t <= h.t]
    if rule.mode == CompositeMode.SEQUENCE:
        return _chain(rule, h, window)
    best: dict[str, MemberHit] = {}
    for x in sorted(window, key=lambda x: (-x.score, x.t, x.key)):
        best.setdefault(x.query_id, x)
    if rule.mode == CompositeMode.ALL_OF and len(best) < len(rule.members):
        return None
    if rule.mode == CompositeMode.ANY_OF and rule.score is None:
        return (h,)  # without a fused score every hit of a member completes
    return tuple(sorted(best.values(), key=lambda x: (x.t, x.key)))


def _confirmed(rule: CompositeRule, hits: list[MemberHit]) -> list[MemberHit]:
    """The hits that meet their member's min_hits rule: that many hits of the member from
    their source within window_s, ending at the hit (itself included). Once per observed
    hit, by binary search over each (member, source)'s sorted times."""
    times: dict[tuple[str, str], list[float]] = {}
    for x in hits:
        times.setdefault((x.query_id, x.source), []).append(x.t)
    for ts in times.values():
        ts.sort()
    out = []
    for x in hits:
        need, window_s = rule.needs(x.query_id)
        ts = times[(x.query_id, x.source)]
        if need <= 1 or bisect_right(ts, x.t) - bisect_left(ts, x.t - window_s) >= need:
            out.append(x)
    return out


def _chain(rule: CompositeRule, h: MemberHit, window: list[MemberHit]
           ) -> tuple[MemberHit, ...] | None:
    """The best-scoring chain of the members' hits in event-time order ending at `h`."""
    if h.query_id != rule.members[-1]:
        return None
    # best[i][key] = (value, chain) of chains over members[0..i] ending at that hit
    layer: dict[str, tuple[float, tuple[MemberHit, ...]]] = {}
    for i, member in enumerate(rule.members):
        here = [h] if i == len(rule.members) - 1 else [x for x in window if x.query_id == member]
        nxt: dict[str, tuple[float, tuple[MemberHit, ...]]] = {}
        for x in here:
            if i == 0:
                nxt[x.key] = (_value(rule, 0, x, 0.0), (x,))
                continue
            prev = [v for v in layer.values() if v[1][-1].t <= x.t]
            if prev:
                value, chain = max(prev, key=lambda v: (v[0], [y.key for y in v[1]]))
                nxt[x.key] = (_value(rule, i, x, value), (*chain, x))
        layer = nxt
        if not layer:
            return None
    return layer[h.key][1] if h.key in layer else None


def _value(rule: CompositeRule, i: int, x: MemberHit, acc: float) -> float:
    """Accumulate a chain's score: max, or the (weighted) sum the mean divides later."""
    if rule.score in (None, FusionScore.MAX):
        return max(acc, x.score) if i else x.score
    weight = rule.weights[i] if rule.score == FusionScore.WEIGHTED and rule.weights else 1.0
    return acc + weight * x.score


@dataclass
class CompositeTracker:
    """Member hits and composite incidents of one (composite, group); JSON state."""

    rule: CompositeRule
    group: str
    hits: list[MemberHit] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)
    incidents: IncidentTracker | None = None

    def __post_init__(self) -> None:
        if self.incidents is None:
            self.incidents = IncidentTracker(self.incident_scope, self._incident_rule())

    @property
    def incident_scope(self) -> str:
        """What alert ids are derived from besides the first completing member item: the
        composite and the group (one item never counts in two groups of a composite, but
        ids must not depend on that)."""
        return composite_scope(self.rule.id, self.group)

    def _incident_rule(self) -> IncidentRule:
        """Every completion is a hit; runs of them closer than clear_s are one incident."""
        return IncidentRule(threshold=float("-inf"), hysteresis=0.0, min_hits=1,
                            window_s=self.rule.within_s, clear_s=self.rule.clear_s,
                            max_lateness_s=self.rule.max_lateness_s)

    # -- persistence --------------------------------------------------------------------
    def to_json(self) -> str:
        assert self.incidents is not None
        return json.dumps({"h": [asdict(h) for h in self.hits], "c": sorted(self.completed),
                           "i": self.incidents.to_json()}, separators=(",", ":"))

    @classmethod
    def from_json(cls, rule: CompositeRule, group: str, raw: str | bytes | None
                  ) -> CompositeTracker:
        tr = cls(rule, group)
        if not raw:
            return tr
        d = json.loads(raw)
        tr.hits = [MemberHit(**h) for h in d.get("h", [])]
        tr.completed = set(d.get("c", []))
        tr.incidents = IncidentTracker.from_json(tr.incident_scope, tr._incident_rule(),
                                                 d.get("i"))
        return tr

    # -- the rule -----------------------------------------------------------------------
    def observe(self, hit: MemberHit) -> list[CompositeFiring]:
        """Take one member hit (any order, redeliveries allowed); the firings to publish."""
        assert self.incidents is not None
        redelivered = any(x.key == hit.key for x in self.hits)
        if not redelivered:
            if hit.t < self.incidents.watermark - self.rule.max_lateness_s:
                return []  # beyond the lateness bound, as for plain queries
            self.hits.append(hit)
        firings: list[CompositeFiring] = []
        # `hit` is in the window of every hit up to within_s after it, and may confirm a
        # hit of its member up to window_s after it: those may complete now
        confirmed = _confirmed(self.rule, self.hits)
        for h in sorted(confirmed, key=lambda x: (x.t, x.key)):
            if not hit.t <= h.t <= hit.t + self.rule.reach_s:
                continue
            if h.key in self.completed and not redelivered:
                continue
            witness = _witness(self.rule, h, confirmed)
            if witness is None:
                continue
            fused = self._fused(witness)
            if self.rule.threshold is not None and fused < self.rule.threshold:
                continue
            self.completed.add(h.key)
            for action in self.incidents.observe(h.t, h.key, fused):
                firings.append(CompositeFiring(self.rule.id, self.group, action,
                                               witness if action.kind == "open" else (),
                                               fused))
        self._prune()
        return firings

    def _fused(self, witness: tuple[MemberHit, ...]) -> float:
        best: dict[str, float] = {}
        for x in witness:
            best[x.query_id] = max(best.get(x.query_id, x.score), x.score)
        return self.rule.fuse(best)

    def _prune(self) -> None:
        assert self.incidents is not None
        horizon = self.incidents.watermark - self.rule.max_lateness_s - self.rule.within_s
        newest = max((h.t for h in self.hits), default=horizon)
        horizon = max(horizon, newest - self.rule.max_lateness_s - self.rule.within_s)
        kept: list[MemberHit] = []
        for member in self.rule.members:
            mine = [h for h in self.hits if h.query_id == member and h.t >= horizon]
            kept += sorted(mine, key=lambda h: (h.t, h.key))[-MAX_HITS_PER_MEMBER:]
        self.hits = kept
        keys = {h.key for h in kept}
        self.completed &= keys

    def live_alerts(self) -> list[str]:
        assert self.incidents is not None
        return self.incidents.live_alerts()


class CompositePolicy:
    """Runs the trackers of a batch's member hits against states loaded for their pairs."""

    def __init__(self, rules: dict[str, CompositeRule]) -> None:
        self.rules = rules

    def evaluate(self, hits: Iterable[tuple[str, str, MemberHit]],
                 states: dict[Pair, str | None]
                 ) -> tuple[list[CompositeFiring], dict[Pair, str]]:
        """`hits` are (composite id, group, hit); the firings, and the new JSON state of
        every pair that changed."""
        trackers: dict[Pair, CompositeTracker] = {}
        firings: list[CompositeFiring] = []
        for composite_id, group, hit in sorted(hits, key=lambda g: (g[2].t, g[2].key, g[0])):
            rule = self.rules.get(composite_id)
            if rule is None:
                continue
            pair = (composite_id, group)
            tracker = trackers.get(pair)
            if tracker is None:
                tracker = trackers[pair] = CompositeTracker.from_json(rule, group,
                                                                      states.get(pair))
            firings += tracker.observe(hit)
        changed = {pair: tr.to_json() for pair, tr in trackers.items()}
        return firings, {p: s for p, s in changed.items() if s != states.get(p)}
