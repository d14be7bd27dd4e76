"""When a match becomes an alert: hysteresis (min_hits within window_s) and cooldown.

Both rules run in EVENT time (the record's timestamp), per (query, source), so replaying
or redelivering records gives the same decisions as the live run. The state of a pair is
small (last alert time and item, last `min_hits` hit times) and is kept in Redis
(`<prefix>:alertstate:<query_id>` hash, field = source) so a restarted or rebalanced
worker continues where the previous one stopped instead of firing again.

Redelivery: a record whose item already fired for this query decides "fire" again; the
deterministic `alert_id` (hash of query id and item key) makes publishing it a no-op.
That way a crash after the state was saved but before the alert was published loses
nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.queries.model import PolicyRule


def alert_id_for(query_id: str, item_key: str) -> str:
    """Deterministic alert id: the same (query, item) always yields the same id."""
    return hashlib.sha256(f"{query_id}\x00{item_key}".encode()).hexdigest()[:32]


@dataclass
class PairState:
    """State of one (query, source): last alert and the recent hits (ts_ms, item key)."""

    last_alert_ts: int | None = None
    last_alert_key: str | None = None
    hits: list[tuple[int, str]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {"t": self.last_alert_ts, "k": self.last_alert_key, "h": self.hits},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> PairState:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(data.get("t"), data.get("k"), [(int(t), str(k)) for t, k in data.get("h", [])])


def decide(state: PairState, rule: PolicyRule, ts_ms: int, item_key: str) -> bool:
    """Record a hit and say whether it raises an alert; mutates `state`.

    Fires when at least `min_hits` distinct items matched within the `window_ms` ending at
    `ts_ms`, and no alert fired within `cooldown_ms` of `ts_ms` (either side, so records
    arriving slightly out of order do not fire twice).
    """
    if state.last_alert_key == item_key:
        return True  # redelivery of the item that fired: same decision, same alert_id
    if all(key != item_key for _, key in state.hits):
        state.hits.append((ts_ms, item_key))
        state.hits.sort()
    lo = ts_ms - rule.window_ms
    recent = [h for h in state.hits if lo < h[0] <= ts_ms]
    # Keep only what a future decision can still need: the newest min_hits hits.
    state.hits = [h for h in state.hits if h[0] > lo][-max(rule.min_hits, 1) :]
    if len(recent) < rule.min_hits:
        return False
    if state.last_alert_ts is not None and abs(ts_ms - state.last_alert_ts) < rule.cooldown_ms:
        return False
    state.last_alert_ts = ts_ms
    state.last_alert_key = item_key
    return True


@dataclass(frozen=True)
class Candidate:
    """A match the policy should judge."""

    query_id: str
    source: str
    ts_ms: int
    item_key: str


class AlertPolicy:
    """Applies `decide` to a batch's candidates against states loaded for their pairs."""

    def __init__(self, rules: dict[str, PolicyRule]) -> None:
        self.rules = rules

    def evaluate(
        self, candidates: Iterable[Candidate], states: dict[tuple[str, str], PairState]
    ) -> tuple[list[Candidate], set[tuple[str, str]]]:
        """Return the candidates that fire and the pairs whose state changed.

        Candidates are judged in event-time order per pair; missing states start empty.
        """
        fired: list[Candidate] = []
        dirty: set[tuple[str, str]] = set()
        for cand in sorted(candidates, key=lambda c: (c.ts_ms, c.item_key)):
            rule = self.rules.get(cand.query_id)
            if rule is None:
                continue
            pair = (cand.query_id, cand.source)
            state = states.setdefault(pair, PairState())
            before = state.to_json()
            if decide(state, rule, cand.ts_ms, cand.item_key):
                fired.append(cand)
            if state.to_json() != before:
                dirty.add(pair)
        return fired, dirty


class PolicyStateStore:
    """Pair states in Redis: one hash per query, one field per source."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s

    def key(self, query_id: str) -> str:
        return f"{self._prefix}:alertstate:{query_id}"

    async def load(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PairState]:
        pairs = sorted(set(pairs))
        if not pairs:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for query_id, source in pairs:
            pipe.hget(self.key(query_id), source)
        raw = await pipe.execute()
        return {pair: PairState.from_json(value) for pair, value in zip(pairs, raw, strict=True)}

    async def save(
        self, states: dict[tuple[str, str], PairState], pairs: Iterable[tuple[str, str]]
    ) -> None:
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for pair in pairs:
            query_id, source = pair
            key = self.key(query_id)
            pipe.hset(key, source, states[pair].to_json())
            pipe.expire(key, self._ttl_s)
            count += 1
        if count:
            await pipe.execute()

    async def forget(self, query_id: str) -> None:
        await self._redis.delete(self.key(query_id))
