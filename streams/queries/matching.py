"""Scoring a batch against every standing query of a modality with one matrix product.

`PatternMatrix` stacks the positive vectors of all enabled queries of one modality into
[P, d] (plus an owner index P -> query) and the negatives into [N, d], on the encoder's
device. `match(vectors [B, d], sources)` does:

1. `sims = vectors @ positives.T` ([B, P], one product) and a scatter-max by owner
   (`scatter_reduce(amax)`) -> best positive score per (item, query) [B, Q];
2. the same for negatives -> best negative score per (item, query);
3. negative suppression: a pair is suppressed when
   `best_negative >= best_positive - negative_margin` (margin 0: the item is at least as
   close to a negative example as to the best positive one; a larger margin suppresses more);
4. threshold (`best_positive >= threshold`), then the source filter on the few surviving
   pairs only (a per-source boolean row over queries, computed once per distinct source
   and cached);
5. only the surviving (item, query) pairs leave the device.

Nothing loops over queries per batch, so the cost per item stays nearly flat as the number
of queries grows (the product is [B, d] x [d, P]).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from streams.core.errors import QueryValidationError
from streams.core.sources import compile_globs


@dataclass(frozen=True)
class QueryPatterns:
    """What the matrix needs of one query: id, vectors, threshold, margin, source globs."""

    query_id: str
    positives: torch.Tensor  # [p, d]
    negatives: torch.Tensor  # [n, d] (n may be 0)
    threshold: float
    negative_margin: float = 0.0
    sources: tuple[str, ...] = ("*",)
    centered: bool = False  # scored after subtracting the item's source's mean vector
    hysteresis: float = 0.0  # an open incident stays open this far below the threshold


@dataclass(frozen=True)
class Match:
    """One (item, query) pair that passed threshold, negatives and source filter."""

    row: int
    query_index: int
    query_id: str
    score: float
    negative_score: float | None


class SourceFilter:
    """Compiled source globs of all queries; answers per (source, query), cached.

    Queries sharing a glob set share one compiled regex; answers are cached per
    (source, glob set), so a new source costs one regex match per distinct glob set.
    Only pairs that already passed threshold and negatives are checked.
    """

    CACHE_LIMIT = 200_000

    def __init__(self, globs: Sequence[tuple[str, ...]]) -> None:
        groups: dict[tuple[str, ...], int] = {}
        self._group_of: list[int] = []
        for patterns in globs:
            self._group_of.append(groups.setdefault(tuple(patterns), len(groups)))
        self._regexes: list[re.Pattern[str] | None] = [compile_globs(key) for key in groups]
        self._first_of_group = {g: self._group_of.index(g) for g in range(len(groups))}
        self._all_match = all(r is None for r in self._regexes)
        self._cache: dict[tuple[str, int], bool] = {}

    @property
    def matches_everything(self) -> bool:
        return self._all_match

    def group_of(self, query_index: int) -> int:
        """Queries with the same glob list share a group (and one answer per source)."""
        return self._group_of[query_index]

    def group_mask(self, group: int, sources: Sequence[str]) -> list[bool]:
        """Which of `sources` the queries of `group` watch."""
        index = self._first_of_group[group]
        return [self.accepts(s, index) for s in sources]

    def accepts(self, source: str, query_index: int) -> bool:
        group = self._group_of[query_index]
        regex = self._regexes[group]
        if regex is None:
            return True
        key = (source, group)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            hit = self._cache[key] = regex.match(source) is not None
        return hit


class PatternMatrix:
    """All enabled standing queries of one modality, stacked for batch scoring."""

    def __init__(self, patterns: Sequence[QueryPatterns], dim: int, device: torch.device) -> None:
        self.dim = dim
        self.device = torch.device(device)
        self.query_ids = [p.query_id for p in patterns]
        pos, pos_owner, neg, neg_owner = [], [], [], []
        for q_index, p in enumerate(patterns):
            for name, t in (("positives", p.positives), ("negatives", p.negatives)):
                if t.numel() and (t.dim() != 2 or t.shape[1] != dim):
                    raise QueryValidationError(
                        f"query {p.query_id!r}: {name} have shape {tuple(t.shape)}, "
                        f"expected [n, {dim}] for this modality's encoder"
                    )
            if p.positives.shape[0] == 0:
                raise QueryValidationError(f"query {p.query_id!r} has no positive vector")
            pos.append(p.positives.float())
            pos_owner.extend([q_index] * p.positives.shape[0])
            if p.negatives.numel():
                neg.append(p.negatives.float())
                neg_owner.extend([q_index] * p.negatives.shape[0])
        self.n_queries = len(patterns)
        empty = torch.zeros(0, dim)
        self.positives = (torch.cat(pos) if pos else empty).to(self.device).contiguous()
        self.negatives = (torch.cat(neg) if neg else empty).to(self.device).contiguous()
        self.pos_owner = torch.tensor(pos_owner, dtype=torch.long, device=self.device)
        self.neg_owner = torch.tensor(neg_owner, dtype=torch.long, device=self.device)
        # One positive per query (the common case) needs no scatter at all.
        self._identity_owner = len(pos_owner) == self.n_queries
        self.thresholds = torch.tensor(
            [p.threshold for p in patterns], dtype=torch.float32, device=self.device
        )
        self.margins = torch.tensor(
            [p.negative_margin for p in patterns], dtype=torch.float32, device=self.device
        )
        self.hysteresis = torch.tensor(
            [p.hysteresis for p in patterns], dtype=torch.float32, device=self.device
        )
        self.sources = SourceFilter([p.sources for p in patterns])
        self.thresholds_version = 0
        centered = [p.centered for p in patterns]
        self.centered = torch.tensor(centered, dtype=torch.bool, device=self.device)
        self._pos_centered = self.centered[self.pos_owner] if pos_owner else self.centered[:0]
        self._neg_centered = self.centered[self.neg_owner] if neg_owner else self.centered[:0]
        # Per source: its own mean vector, and the patterns centered on it (centered
        # queries score an item relative to what its own source usually sends).
        self.centers: dict[str, torch.Tensor] = {}
        self._centered_patterns: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.centers_version = 0

    @property
    def has_centered(self) -> bool:
        return bool(self.centered.any())

    def set_centers(self, means: Mapping[str, torch.Tensor], *, version: int = 0) -> None:
        """Each source's mean vector for centered queries. A source without one (too few
        items seen yet) scores -inf on those queries: it neither matches nor feeds their
        background until its mean is known."""
        centers: dict[str, torch.Tensor] = {}
        patterns: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for source, mean in means.items():
            c = mean.to(self.device, torch.float32).reshape(1, -1)
            old = self.centers.get(source)
            if old is not None and torch.equal(old, c):
                centers[source], patterns[source] = old, self._centered_patterns[source]
                continue
            centers[source] = c
            patterns[source] = (_normalized(self.positives - c), _normalized(self.negatives - c))
        self.centers, self._centered_patterns = centers, patterns
        self.centers_version = version

    def set_thresholds(self, values: dict[str, float], *, version: int) -> None:
        """Replace the thresholds of the named queries (auto thresholds move while the
        matrix stays); `version` lets the caller skip an update it already made."""
        current = self.thresholds.cpu().tolist()
        for i, qid in enumerate(self.query_ids):
            if qid in values:
                current[i] = float(values[qid])
        self.thresholds = torch.tensor(current, dtype=torch.float32, device=self.device)
        self.thresholds_version = version

    def __len__(self) -> int:
        return self.n_queries


    def _scatter_max(self, sims: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        out = torch.full(
            (sims.shape[0], self.n_queries), float("-inf"), dtype=sims.dtype, device=sims.device
        )
        return out.scatter_reduce_(1, owner.expand(sims.shape[0], -1), sims, reduce="amax")

    def scores(self, vectors: torch.Tensor, sources: Sequence[str] = ()
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Best positive score [B, Q], and best negative score [B, Q] (-inf: none) or None.
        `sources` (one per row) is needed only by centered queries."""
        vectors = vectors.to(self.device, torch.float32)
        if vectors.dim() != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors [B, {self.dim}], got {tuple(vectors.shape)}")
        sims = self._sims(vectors, self.positives, 0, self._pos_centered, sources)
        best = sims if self._identity_owner else self._scatter_max(sims, self.pos_owner)
        if self.negatives.shape[0] == 0:
            return best, None
        neg = self._sims(vectors, self.negatives, 1, self._neg_centered, sources)
        return best, self._scatter_max(neg, self.neg_owner)

    def _sims(self, vectors: torch.Tensor, patterns: torch.Tensor, side: int,
              mask: torch.Tensor, sources: Sequence[str]) -> torch.Tensor:
        """Cosine to each pattern row; centered rows use vectors and patterns centered on
        the item's own source (`side` 0: positives, 1: negatives)."""
        sims = vectors @ patterns.T
        if not bool(mask.any()):
            return sims
        centered = torch.full_like(sims, float("-inf"))
        for source, rows in _rows_by_source(sources).items():
            if source not in self.centers:
                continue
            idx = torch.tensor(rows, device=vectors.device)
            v = _normalized(vectors.index_select(0, idx) - self.centers[source])
            centered[idx] = v @ self._centered_patterns[source][side].T
        return torch.where(mask, centered, sims)

    def match(self, vectors: torch.Tensor, sources: Sequence[str]) -> list[Match]:
        """Pairs passing threshold, negative suppression and source filter, row-major order."""
        if self.n_queries == 0 or len(sources) == 0:
            return []
        if len(sources) != vectors.shape[0]:
            raise ValueError(f"{vectors.shape[0]} vectors but {len(sources)} sources")
        with torch.inference_mode():
            best, negative = self.scores(vectors, sources)
        return self.select(best, negative, sources)

    def select(self, best: torch.Tensor, negative: torch.Tensor | None,
               sources: Sequence[str], with_hysteresis: bool = False,
               floors: dict[str, float] | None = None) -> list[Match]:
        """`match` on scores already computed by `scores` (the observer also needs them);
        `with_hysteresis` lowers each query's threshold by its hysteresis (an open incident
        stays open on scores just below the threshold); `floors` replaces the thresholds
        (queries it leaves out match nothing: composite member hits use it)."""
        if self.n_queries == 0 or len(sources) == 0:
            return []
        with torch.inference_mode():
            floor = self.thresholds - self.hysteresis if with_hysteresis else self.thresholds
            if floors is not None:
                floor = torch.tensor([floors.get(q, float("inf")) for q in self.query_ids],
                                     dtype=torch.float32, device=self.device)
            keep = best >= floor
            if negative is not None:
                keep &= negative < best - self.margins
            pairs = keep.nonzero()
            if pairs.shape[0] == 0:
                return []
            rows, cols = pairs[:, 0], pairs[:, 1]
            # One device->host copy for everything the Python loop reads (float64 holds
            # row and column indices exactly).
            columns = [rows.double(), cols.double(), best[rows, cols].double()]
            if negative is not None:
                columns.append(negative[rows, cols].double())
            host = torch.stack(columns).cpu().tolist()
            rows_l = [int(r) for r in host[0]]
            cols_l = [int(c) for c in host[1]]
            picked = host[2]
            neg_picked = host[3] if negative is not None else None
        out = []
        check_sources = not self.sources.matches_everything
        for i, (r, c) in enumerate(zip(rows_l, cols_l, strict=True)):
            if check_sources and not self.sources.accepts(sources[r], c):
                continue
            n = neg_picked[i] if neg_picked is not None else None
            out.append(
                Match(
                    row=r,
                    query_index=c,
                    query_id=self.query_ids[c],
                    score=picked[i],
                    negative_score=n if n is not None and n != float("-inf") else None,
                )
            )
        return out


def _normalized(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(t, dim=-1) if t.numel() else t


def _rows_by_source(sources: Sequence[str]) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        rows.setdefault(source, []).append(i)
    return rows
