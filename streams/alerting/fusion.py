"""Composite queries at run time: member hits of each batch -> Redis state -> one alert.

Every worker turns its own batches' member hits into (composite, group) hits and runs
`streams.alerting.composite.CompositePolicy` on the states of those pairs, kept in Redis
(`<prefix>:alertstate:<composite_id>`, field = group) and saved by the same atomic
compare-and-set as the per-query incidents (`PolicyStateStore.update`, one Lua script): a
worker whose hits arrive while another worker saved the same pair decides again on the
fresh state, so hits of different modalities consumed by different workers meet in one
state. The state is saved BEFORE the alerts are published; publishing is once per
deterministic `alert_id` (`AlertStore.publish_once`: published flag + claim), and a
redelivered batch re-issues the alerts its hits completed with the same ids. So neither a
restart nor a rebalance puts a second composite alert on the topic (docs/alerting.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streams.alerting.alerts import Alert
from streams.alerting.composite import (
    CompositeFiring,
    CompositePolicy,
    CompositeRule,
    MemberHit,
    member_rules,
)
from streams.alerting.policy import PolicyStateStore
from streams.queries.composite import CompositeQuery
from streams.queries.matching import Match
from streams.queries.model import RegisteredQuery
from streams.queries.registry import QueryRegistry
from streams.queries.sites import group_of

#: A log line in a member's evidence is cut to this (the state of a pair is one Redis value).
MAX_EVIDENCE_TEXT = 1000


@dataclass(frozen=True)
class HitSource:
    """What a member hit needs of the matched item."""

    uid: str
    item_key: str
    source: str
    modality: str
    ts_ms: int
    evidence: dict[str, Any]


def hit_floors(registry: QueryRegistry, threshold_of: Callable[[str], float],
               query_ids: Sequence[str]) -> dict[str, float]:
    """Per member query of this matrix, the lowest hit threshold any enabled composite
    gives it (default: the member's effective threshold); empty without composites."""
    wanted = set(query_ids)
    floors: dict[str, float] = {}
    for rc in registry.composites():
        if not rc.composite.enabled:
            continue
        for qid in set(rc.composite.member_ids) & wanted:
            floor = _hit_threshold(rc.composite, qid, threshold_of)
            floors[qid] = min(floors.get(qid, floor), floor)
    return floors


def _hit_threshold(c: CompositeQuery, query_id: str, threshold_of: Callable[[str], float]
                   ) -> float:
    member = next(m for m in c.members if m.query_id == query_id)
    return member.hit_threshold if member.hit_threshold is not None else threshold_of(query_id)


def member_hits(registry: QueryRegistry, threshold_of: Callable[[str], float],
                matches: Sequence[tuple[Match, HitSource]]) -> list[tuple[str, str, MemberHit]]:
    """(composite id, group, hit) for each match at or above a composite's hit threshold
    of that member, from a source with a group."""
    out = []
    for m, item in matches:
        for c in registry.composites_of(m.query_id):
            if not c.enabled or m.score < _hit_threshold(c, m.query_id, threshold_of):
                continue
            group = group_of(c.group_by, item.source, registry.sites)
            if group is None:
                continue
            out.append((c.id, group, MemberHit(
                m.query_id, item.uid, item.item_key, item.source, item.modality,
                item.ts_ms / 1000, round(m.score, 6), _short(item.evidence))))
    return out


def _short(evidence: dict[str, Any]) -> dict[str, Any]:
    text = evidence.get("text")
    if isinstance(text, str) and len(text) > MAX_EVIDENCE_TEXT:
        return {**evidence, "text": text[:MAX_EVIDENCE_TEXT - 3] + "..."}
    return dict(evidence)


def composite_alert(c: CompositeQuery, firing: CompositeFiring, site: str | None) -> Alert:
    """The alert of an opened composite incident: each member's evidence, time and score."""
    last = firing.witness[-1]
    members = [{"query_id": h.query_id, "item_key": h.item_key, "source": h.source,
                "modality": h.modality, "ts": int(round(h.t * 1000)), "score": h.score,
                **h.evidence} for h in firing.witness]
    start = firing.action.start_t if firing.action.start_t is not None else last.t
    return Alert.build(
        alert_id=firing.action.alert_id, query_id=c.id, item_key=last.item_key,
        query_name=c.name, modality="composite", source=last.source, site=site,
        ts=int(round(firing.action.t * 1000)), score=round(firing.score, 6),
        threshold=c.threshold if c.threshold is not None else 0.0, severity=c.severity,
        labels=c.labels,
        evidence={"group_by": c.group_by, "group": firing.group, "members": members},
        incident={"start": int(round(start * 1000)), "end": None,
                  "peak": round(firing.score, 6)})


class CompositeStage:
    """Evaluates the composites a batch's member hits belong to and publishes their alerts."""

    def __init__(self, registry: QueryRegistry, states: PolicyStateStore,
                 publish: Callable[[Alert], Awaitable[bool]],
                 update_incident: Callable[..., Awaitable[None]]) -> None:
        self.registry = registry
        self.states = states
        self.publish = publish
        self.update_incident = update_incident

    def rules(self) -> dict[str, CompositeRule]:
        def members(c: CompositeQuery) -> list[RegisteredQuery]:
            return [rq for qid in c.member_ids if (rq := self.registry.find(qid)) is not None]

        return {rc.id: CompositeRule.of(rc.composite, member_rules(members(rc.composite)))
                for rc in self.registry.composites() if rc.composite.enabled}

    async def run(self, hits: list[tuple[str, str, MemberHit]]) -> list[Alert]:
        """Save the pairs' new states (compare-and-set), then publish what they opened."""
        if not hits:
            return []
        policy = CompositePolicy(self.rules())
        firings = await self.states.update({(c, g) for c, g, _ in hits},
                                           lambda states: policy.evaluate(hits, states))
        raised = []
        for f in firings:
            rc = self.registry.find_composite(f.composite_id)
            if rc is None:
                continue
            if f.action.kind == "open":
                alert = composite_alert(rc.composite, f, self._site(f))
                if await self.publish(alert):
                    raised.append(alert)
            elif f.action.kind == "close":
                await self.update_incident(f.action.alert_id,
                                           end=int(round((f.action.end_t or 0) * 1000)),
                                           peak=round(f.action.score, 6))
            else:
                await self.update_incident(f.action.alert_id, merged_into=f.action.into)
        return raised

    def _site(self, f: CompositeFiring) -> str | None:
        site = self.registry.sites.site_of(f.witness[-1].source) if f.witness else None
        return site.name if site is not None else None
