""""Would it have fired?": a standing query run over the retained history in Redis.

Candidates come from one vector range query per positive example (Redis does the
search); the candidates' stored vectors then go through the very same `PatternMatrix`
and `AlertPolicy` as live items, so the preview applies negatives, source globs,
hysteresis and cooldown exactly as the worker would have. A composite's preview runs each
member's, then the live `CompositePolicy` over their hits.

Queries scored centered (`thresholds.CENTERED`: each item and pattern minus the mean of
the item's own source) get the source means the workers keep in Redis
(`ThresholdKeeper.source_means`), so their preview scores equal their live scores. A
centered score is not bounded by the raw cosine a range query measures, so their
candidates are the `CENTERED_CANDIDATES` items nearest each positive in raw space instead
(`truncated` says when the retained history held more).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streams.alerting.composite import CompositePolicy, CompositeRule, MemberHit, member_rules
from streams.alerting.policy import AlertPolicy, Candidate
from streams.alerting.thresholds import center_space
from streams.core.sources import matches as source_matches
from streams.core.sources import redis_prefilter
from streams.ingest.records import evidence_of
from streams.queries.composite import CompositeQuery
from streams.queries.matching import PatternMatrix
from streams.queries.model import PolicyRule, RegisteredQuery
from streams.queries.registry import build_matrix
from streams.queries.sites import SiteMap, group_of
from streams.queries.thresholds import ScoreHistogram

SourceMeans = Callable[[str, Sequence[str]], Awaitable[Mapping[str, torch.Tensor]]]
"""`means(space, sources)`: each source's mean vector in `space` as the workers keep it
(`ThresholdKeeper.source_means`); sources without one are left out."""
#: Candidates per positive of a centered query (the raw-nearest items, see above).
CENTERED_CANDIDATES = 2000


def matrix_of(rq: RegisteredQuery, encoder: Any) -> PatternMatrix | None:
    """A matrix of `rq` alone, enabled or not (None: bound to another model)."""
    active = rq.model_copy(update={"query": rq.query.model_copy(update={"enabled": True})})
    matrix, skipped = build_matrix([active], encoder)
    return None if skipped else matrix


async def _candidates(matrix: PatternMatrix, rq: RegisteredQuery, store: Any, *,
                      threshold: float, ts_range: tuple[int | None, int | None] | None,
                      limit: int) -> tuple[list[Any], bool]:
    """The retained items worth scoring, with their vectors, and whether there were more:
    those at or above `threshold` in raw cosine to a positive, or for a centered query the
    raw-nearest ones."""
    sources = redis_prefilter(rq.query.sources)
    keys: dict[str, Any] = {}
    truncated = False
    for vector in matrix.positives:
        if matrix.has_centered:
            budget = max(limit, CENTERED_CANDIDATES)
            hits = await store.knn(vector, budget, sources=sources, ts_range=ts_range)
        else:
            budget = limit
            hits = await store.range(vector, max(-1.0, threshold), sources=sources,
                                     ts_range=ts_range, limit=limit)
        truncated = truncated or len(hits) >= budget
        for hit in hits:
            keys.setdefault(hit.key, hit)
    stored = await store.get_many(list(keys))
    return [s for s in stored if s is not None and len(s.vector) == matrix.dim], truncated


async def _with_centers(matrix: PatternMatrix, rq: RegisteredQuery, encoder: Any,
                        sources: Sequence[str], means: SourceMeans) -> None:
    """Give a centered query's matrix the means of these sources, as the live one has."""
    if matrix.has_centered:
        space = center_space(rq.query.modality, encoder)
        matrix.set_centers(await means(space, sorted(set(sources))), version=1)


async def preview_query(
    rq: RegisteredQuery,
    encoder: Any,
    store: Any,
    *,
    threshold: float,
    means: SourceMeans,
    ts_range: tuple[int | None, int | None] | None = None,
    limit: int = 200,
) -> dict[str, Any]:
    """What `rq` would have matched and fired on at `threshold` (the one in force).

    Its candidates carry no topic incarnation, unlike live ones (`AlertingService`), on
    purpose: a preview publishes nothing and returns item keys, never alert ids, so no id
    of it can collide with a live alert's; and Redis holds one item per Kafka position, so
    the items it reads are distinct without the topic id (a recreated topic overwrites its
    old positions). Fetching topic ids would make a read-only API call depend on Kafka."""
    q = rq.query
    matrix = matrix_of(rq, encoder)
    if matrix is None:
        raise ValueError(
            f"query {q.id!r} was registered with {rq.model_id}; this worker's {q.modality} "
            f"encoder is {encoder.model_id}"
        )
    matrix.set_thresholds({q.id: threshold}, version=1)
    stored, truncated = await _candidates(matrix, rq, store, threshold=threshold,
                                          ts_range=ts_range, limit=limit)
    if not stored:
        return {"query_id": q.id, "matches": [], "would_fire": [], "match_count": 0,
                "alert_count": 0, "truncated": truncated}
    await _with_centers(matrix, rq, encoder, [s.source for s in stored], means)
    vectors = torch.stack([torch.as_tensor(s.vector) for s in stored])
    matches = matrix.match(vectors, [s.source for s in stored])
    rows = []
    for m in matches:
        s = stored[m.row]
        rows.append({
            "key": s.key, "score": round(m.score, 6), "source": s.source, "ts": s.ts_ms,
            "negative_score": m.negative_score,
            "evidence": evidence_of(q.modality, s.key, s.text, "clip_type" in s.fields),
        })
    rows.sort(key=lambda r: r["ts"])
    policy = AlertPolicy({q.id: PolicyRule.of(q)}, lambda _: threshold)
    decisions, _ = policy.evaluate(
        [Candidate(q.id, r["source"], r["ts"], r["key"], r["score"]) for r in rows], {})
    fired_keys = {d.candidate.item_key for d in decisions if d.action.kind == "open"}
    return {
        "query_id": q.id,
        "threshold": round(threshold, 6),
        "matches": rows,
        "would_fire": [r for r in rows if r["key"] in fired_keys],
        "match_count": len(rows),
        "alert_count": len(fired_keys),
        "truncated": truncated,
    }


async def best_matches(rq: RegisteredQuery, encoder: Any, store: Any, *, means: SourceMeans,
                       k: int = 5) -> list[dict[str, Any]]:
    """The `k` retained items of the query's sources that score highest against it
    (whatever its threshold), best first: what the background's top looks like."""
    if k == 0:
        return []
    q = rq.query
    matrix = matrix_of(rq, encoder)
    if matrix is None:
        return []
    if matrix.has_centered:
        return await _best_centered(matrix, rq, encoder, store, means, k)
    seen: dict[str, float] = {}
    for vector in matrix.positives:
        for hit in await store.knn(vector, k * 4, sources=redis_prefilter(q.sources)):
            if source_matches(hit.source, q.sources):
                seen[hit.key] = max(seen.get(hit.key, -1.0), hit.score)
    keys = sorted(seen, key=lambda key: -seen[key])[:k]
    return [{"key": s.key, "score": round(seen[s.key], 6), "source": s.source, "ts": s.ts_ms,
             "evidence": evidence_of(q.modality, s.key, s.text, "clip_type" in s.fields)}
            for s in await store.get_many(keys)]


async def _best_centered(matrix: PatternMatrix, rq: RegisteredQuery, encoder: Any,
                         store: Any, means: SourceMeans, k: int) -> list[dict[str, Any]]:
    """`best_matches` of a centered query: its raw-nearest candidates ranked by the
    centered score the live matching gives them (items of a source without a mean yet
    score nothing, as live)."""
    stored, _ = await _candidates(matrix, rq, store, threshold=-1.0, ts_range=None, limit=k)
    stored = [s for s in stored if source_matches(s.source, rq.query.sources)]
    if not stored:
        return []
    sources = [s.source for s in stored]
    await _with_centers(matrix, rq, encoder, sources, means)
    vectors = torch.stack([torch.as_tensor(s.vector) for s in stored])
    with torch.inference_mode():
        best = matrix.scores(vectors, sources)[0][:, 0].tolist()
    ranked = sorted((i for i, b in enumerate(best) if b != float("-inf")),
                    key=lambda i: -best[i])[:k]
    modality = rq.query.modality
    return [{"key": stored[i].key, "score": round(best[i], 6), "source": stored[i].source,
             "ts": stored[i].ts_ms, "evidence": evidence_of(
                 modality, stored[i].key, stored[i].text, "clip_type" in stored[i].fields)}
            for i in ranked]


def coarse_histogram(hist: ScoreHistogram, bins: int) -> dict[str, Any]:
    """`bins` equal bins over the occupied score range (the 2000-bin grid is too fine to
    draw): {"edges": [...], "counts": [...], "n": total}."""
    nz = np.nonzero(hist.counts)[0]
    if nz.size == 0:
        return {"edges": [], "counts": [], "n": 0}
    edges = hist.edges()
    lo, hi = float(edges[nz[0]]), float(edges[nz[-1] + 1])
    coarse = np.linspace(lo, hi, bins + 1)
    which = np.clip(np.searchsorted(coarse, hist.centers()[nz], side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, weights=hist.counts[nz], minlength=bins).astype(int)
    return {"edges": [round(float(e), 4) for e in coarse], "counts": counts.tolist(),
            "n": hist.count}


@dataclass(frozen=True)
class MemberPreview:
    """One member of a composite as the preview needs it: its query, its hit threshold,
    and where its items are (encoder and index store of its modality)."""

    rq: RegisteredQuery
    hit_threshold: float
    encoder: Any
    store: Any


async def preview_composite(
    composite: CompositeQuery,
    members: list[MemberPreview],
    sites: SiteMap,
    *,
    means: SourceMeans,
    ts_range: tuple[int | None, int | None] | None = None,
    limit: int = 200,
) -> dict[str, Any]:
    """What the composite would have fired on: each member's retained hits (`preview_query`
    at its hit threshold), then the very same `CompositePolicy` as live hits."""
    rows: dict[str, list[dict[str, Any]]] = {}
    truncated = False
    for m in members:
        found = await preview_query(m.rq, m.encoder, m.store, threshold=m.hit_threshold,
                                    means=means, ts_range=ts_range, limit=limit)
        rows[m.rq.id] = found["matches"]
        truncated = truncated or found["truncated"]
    modality = {m.rq.id: m.rq.query.modality.value for m in members}
    confirm = member_rules(m.rq for m in members)
    return {**composite_firings(composite, rows, modality, sites, confirm),
            "truncated": truncated}


def composite_firings(composite: CompositeQuery, rows: dict[str, list[dict[str, Any]]],
                      modality: dict[str, str], sites: SiteMap,
                      confirm: dict[str, tuple[int, float]] | None = None) -> dict[str, Any]:
    """The composite's alerts from its members' preview rows (pure); `confirm`: each
    member's (min_hits, window_s), as the worker applies them."""
    hits = []
    for query_id, found in rows.items():
        for r in found:
            group = group_of(composite.group_by, r["source"], sites)
            if group is not None:
                hits.append((composite.id, group, MemberHit(
                    query_id, r["key"], r["key"], r["source"], modality[query_id],
                    r["ts"] / 1000, r["score"], dict(r["evidence"]))))
    policy = CompositePolicy({composite.id: CompositeRule.of(composite, confirm)})
    firings, _ = policy.evaluate(hits, {})
    opened = [f for f in firings if f.action.kind == "open"]
    merged = {f.action.alert_id for f in firings if f.action.kind == "merge"}
    fired = [{"group": f.group, "ts": int(round(f.action.t * 1000)),
              "score": round(f.score, 6),
              "members": [{"query_id": h.query_id, "key": h.item_key, "source": h.source,
                           "ts": int(round(h.t * 1000)), "score": h.score} for h in f.witness]}
             for f in opened if f.action.alert_id not in merged]
    return {"composite_id": composite.id,
            "hit_counts": {q: len(found) for q, found in rows.items()},
            "would_fire": sorted(fired, key=lambda x: x["ts"]), "alert_count": len(fired)}
