"""When matches become alerts: incidents per (query, source), judged in event time.

Each batch's candidates (items at or above a query's threshold minus its hysteresis, not
suppressed by a negative, from a watched source) go, in event-time order, to the
`IncidentTracker` of their (query, source) (`streams.alerting.incidents`): a new incident
raises one alert, its later items only extend it, a gap of `clear_s` ends it. Decisions run
in EVENT time (the record's timestamp), so replaying or redelivering records gives the same
decisions as the live run, for any arrival order.

The state of a pair is small JSON and is kept in Redis (`<prefix>:alertstate:<query_id>`
hash, field = source), so a restarted or rebalanced worker continues where the previous one
stopped instead of firing again. The state is saved BEFORE alerts are published: a crash in
between redelivers the batch, the confirming item re-issues its alert with the same id, and
publishing (idempotent per alert id) completes it.

Saving is compare-and-set (`PolicyStateStore.update`): the new states are written only if
every pair still holds the state they were computed from, else they are computed again
from the fresh states. So a zombie worker (one still running after a rebalance gave its
partitions to another) cannot overwrite what the new owner saved meanwhile; since the
tracker is a function of the set of observations, recomputing keeps both workers' items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from streams.alerting.incidents import IncidentAction, IncidentRule, IncidentTracker
from streams.alerting.leases import HashFields
from streams.core.errors import LookoutError
from streams.queries.model import PolicyRule

Pair = tuple[str, str]
T = TypeVar("T")


class PolicyStateConflict(LookoutError):
    """Another worker kept changing these pairs' states; the batch is retried."""


@dataclass(frozen=True)
class Candidate:
    """A scored item the policy should judge for one query.

    `item_key` names a Kafka position; `incarnation` (the topic id) tells apart the
    positions of a topic deleted and created again (`streams.alerting.incarnations`).
    """

    query_id: str
    source: str
    ts_ms: int
    item_key: str
    score: float
    incarnation: str = ""

    @property
    def uid(self) -> str:
        """What identifies the item to incidents and alert ids: never reused."""
        return f"{self.item_key}@{self.incarnation}" if self.incarnation else self.item_key


@dataclass(frozen=True)
class Decision:
    """What to do about an incident, and the candidate whose arrival caused it."""

    candidate: Candidate
    action: IncidentAction


class AlertPolicy:
    """Runs the incident trackers of a batch's candidates against states loaded for their
    pairs; `threshold_of` gives each query's threshold in force (auto ones move)."""

    def __init__(self, rules: dict[str, PolicyRule], threshold_of: Callable[[str], float]
                 ) -> None:
        self.rules = rules
        self.threshold_of = threshold_of

    def rule(self, query_id: str) -> IncidentRule | None:
        r = self.rules.get(query_id)
        if r is None:
            return None
        return IncidentRule(threshold=self.threshold_of(query_id), hysteresis=r.hysteresis,
                            min_hits=r.min_hits, window_s=r.window_s, clear_s=r.clear_s)

    def evaluate(self, candidates: Iterable[Candidate], states: dict[Pair, str | None]
                 ) -> tuple[list[Decision], dict[Pair, str]]:
        """The decisions, and the new JSON state of every pair that changed."""
        trackers: dict[Pair, IncidentTracker] = {}
        decisions: list[Decision] = []
        for cand in sorted(candidates, key=lambda c: (c.ts_ms, c.uid)):
            pair = (cand.query_id, cand.source)
            tracker = trackers.get(pair)
            if tracker is None:
                rule = self.rule(cand.query_id)
                if rule is None:
                    continue
                tracker = trackers[pair] = IncidentTracker.from_json(
                    cand.query_id, rule, states.get(pair))
            for action in tracker.observe(cand.ts_ms / 1000, cand.uid, cand.score):
                decisions.append(Decision(cand, action))
        changed = {pair: tr.to_json() for pair, tr in trackers.items()}
        return decisions, {p: s for p, s in changed.items() if s != states.get(p)}


class PolicyStateStore:
    """Pair states (incident tracker JSON) in Redis: one hash per query, one field per
    source."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._fields = HashFields(redis)
        self._prefix = prefix
        self._ttl_s = ttl_s

    def key(self, query_id: str) -> str:
        return f"{self._prefix}:alertstate:{query_id}"

    async def load(self, pairs: Iterable[Pair]) -> dict[Pair, str | None]:
        pairs = sorted(set(pairs))
        if not pairs:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for query_id, source in pairs:
            pipe.hget(self.key(query_id), source)
        raw = await pipe.execute()
        return {pair: (v.decode() if isinstance(v, bytes) else v)
                for pair, v in zip(pairs, raw, strict=True)}

    async def update(
        self,
        pairs: Iterable[Pair],
        decide: Callable[[dict[Pair, str | None]], tuple[T, dict[Pair, str]]],
        attempts: int = 5,
    ) -> T:
        """Load the pairs' states, `decide` (-> result, changed states), save the changed
        ones only if no pair changed since the load; on a conflict, load and decide again.
        Returns the result of the `decide` whose states were saved."""
        pairs = list(pairs)
        for _ in range(attempts):
            loaded = await self.load(pairs)
            result, changed = decide(loaded)
            writes = {(self.key(q), src): (loaded.get((q, src)), value)
                      for (q, src), value in changed.items()}
            if await self._fields.set_if_unchanged(writes, self._ttl_s):
                return result
        raise PolicyStateConflict(
            f"alert state of {len(pairs)} (query, source) pairs changed under this worker "
            f"{attempts} times in a row (another worker is alerting on the same sources)")

    async def forget(self, query_id: str) -> None:
        await self._redis.delete(self.key(query_id))
