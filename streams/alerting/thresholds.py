"""`threshold: auto` at run time: every query's background in Redis, its threshold kept fresh.

Each batch, `observe` counts the best-positive score of every item against every auto
query that watches the item's source (the query's *background*), locally; `refresh` (every
`refresh_s`, and once at start) adds those counts to Redis with HINCRBY, reads the merged
histograms back, and re-derives each threshold with `streams.queries.thresholds`. Redis
holds, per query and pattern set (the hash key carries a fingerprint of the positives, so
new examples start a new background):

    <prefix>:calib:<query_id>:<fp>        hash  bin -> count      (the ScoreHistogram)
    <prefix>:calib:<query_id>:<fp>:meta   hash  n, first_ts, last_ts, threshold, source,
                                                expected_per_day, moved_at
    <prefix>:calib:<query_id>:<fp>:src    HyperLogLog of the sources seen

so every worker derives the same threshold from the same counts, and a restart loses
nothing. Queries whose raw scores are degenerate (`thresholds.CENTERED`: aisfx examples sit
at 0.7-0.8 against plain room noise) score an item after subtracting the mean vector of
the item's own SOURCE (each microphone's usual ambience, not the modality's average);
those means are kept the same way, as a running sum per worker process:

    <prefix>:center:<modality>:<model>:<source>   hash  process token -> float64 [n, sum...]

At registration `seed` scores the query against the items its modality still retains, so
a query registered on a busy system starts from data, not from its prior. A refresh
re-reads a histogram only when its count moved (any worker's flush moves it), and writes
the meta hash only when what it says changed.
The background is a statistical summary, not a ledger: a batch redelivered after a crash is
counted again (a few duplicate scores among thousands move no quantile that matters), so it
needs none of the exactly-once machinery of alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from streams.core.metrics import Metrics
from streams.core.periodic import every, start_task, stop_task
from streams.index.store import IndexStore
from streams.queries.matching import PatternMatrix
from streams.queries.model import RegisteredQuery
from streams.queries.registry import QueryRegistry, starting_threshold
from streams.queries.thresholds import (
    N_BINS,
    BackgroundCentering,
    CalibrationConfig,
    ScoreHistogram,
    ThresholdChoice,
    choose_threshold,
)

log = logging.getLogger(__name__)

#: Keep a background this long after its last update (a deleted query's expires with it).
BACKGROUND_TTL_S = 30 * 24 * 3600
#: A threshold "moved" when it changed by more than this (for `moved_at`).
MOVE_EPSILON = 0.002
#: Retained items scored at registration (enough for the tail fit, cheap to read).
SEED_ITEMS = 2000
#: How far ahead of the worker's clock an event time may be and still count as live.
MAX_FUTURE_SKEW_MS = 86_400_000
#: Items a source's mean needs before centered queries may score its items at all.
MIN_CENTER_ITEMS = 20

_SPAN_SCRIPT = """
redis.call('HINCRBY', KEYS[1], 'n', ARGV[1])
local lo = redis.call('HGET', KEYS[1], 'first_ts')
if (not lo) or tonumber(ARGV[2]) < tonumber(lo) then
  redis.call('HSET', KEYS[1], 'first_ts', ARGV[2])
end
local hi = redis.call('HGET', KEYS[1], 'last_ts')
if (not hi) or tonumber(ARGV[3]) > tonumber(hi) then
  redis.call('HSET', KEYS[1], 'last_ts', ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


def positives_fingerprint(rq: RegisteredQuery) -> str:
    """Changes when the positive vectors (hence every background score) change."""
    return hashlib.sha256(f"{rq.model_id}\x00{rq.positive_vectors_b64}".encode()).hexdigest()[:12]


Layout = tuple[tuple[str, ...], tuple[int, ...]]  # background keys, source groups


@dataclass
class _Pending:
    """Background counts of one matrix's auto queries not yet in Redis, kept batch by batch
    as sparse (column * N_BINS + bin, count) pairs: cheap per batch for 10,000 queries."""

    keys: list[str]  # Redis key per auto column j
    groups: list[int]  # source group per auto column j
    flats: list[np.ndarray] = field(default_factory=list)
    counts: list[np.ndarray] = field(default_factory=list)
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    first: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sources: dict[int, set[str]] = field(default_factory=dict)  # group -> sources seen

    def __post_init__(self) -> None:
        q = len(self.keys)
        self.n = np.zeros(q, np.int64)
        self.first = np.full(q, np.iinfo(np.int64).max)
        self.last = np.full(q, np.iinfo(np.int64).min)

    def absorb(self, other: _Pending) -> None:
        """Take back counts a failed flush did not send."""
        self.flats += other.flats
        self.counts += other.counts
        self.n += other.n
        self.first = np.minimum(self.first, other.first)
        self.last = np.maximum(self.last, other.last)
        for g, s in other.sources.items():
            self.sources.setdefault(g, set()).update(s)

    def merged(self) -> list[tuple[str, list[tuple[int, int]]]]:
        """Per key, its (bin, count) increments."""
        if not self.flats:
            return []
        uniq, inverse = np.unique(np.concatenate(self.flats), return_inverse=True)
        totals = np.bincount(inverse, weights=np.concatenate(self.counts)).astype(np.int64)
        out: dict[int, list[tuple[int, int]]] = {}
        for flat, c in zip(uniq.tolist(), totals.tolist(), strict=True):
            out.setdefault(flat // N_BINS, []).append((flat % N_BINS, c))
        return [(self.keys[j], bins) for j, bins in out.items()]


@dataclass(frozen=True)
class Calibration:
    """What `threshold: auto` decided for one query, as the API and CLI show it."""

    choice: ThresholdChoice
    items_per_day: float | None
    sources: int
    moved_at_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        c = self.choice
        return {
            "threshold": round(c.threshold, 4), "basis": c.source,
            "background_items": c.background_n,
            "expected_alerts_per_day": (None if c.expected_per_day is None
                                        else round(c.expected_per_day, 3)),
            "items_per_source_day": (None if self.items_per_day is None
                                     else round(self.items_per_day, 1)),
            "sources": self.sources, "moved_at": self.moved_at_ms,
            "prior": c.prior, "noise_floor": c.floor,
        }


class ThresholdKeeper:
    """Keeps the threshold of every `threshold: auto` query of one worker."""

    def __init__(self, redis: Any, prefix: str, registry: QueryRegistry, metrics: Metrics,
                 *, refresh_s: float = 2.0, config: CalibrationConfig | None = None) -> None:
        self._redis = redis
        self._prefix = prefix
        self._registry = registry
        self._metrics = metrics
        self.refresh_s = refresh_s
        self.config = config or CalibrationConfig()
        # Per matrix (weakly: a query change builds a new one) its auto columns and the
        # identity of their pending counts; the counts themselves are held here strongly,
        # so a matrix replaced before a flush (a query added, a verdict learned) loses none.
        self._by_matrix: weakref.WeakKeyDictionary[PatternMatrix, tuple[np.ndarray, Layout]] = (
            weakref.WeakKeyDictionary())
        self._pending: dict[Layout, _Pending] = {}
        self._current: dict[str, Calibration] = {}
        self._basis: dict[str, tuple[str, int]] = {}  # query id -> (fingerprint, count) derived
        self._version = 1  # a new matrix has version 0: apply once at least
        self._task: asyncio.Task[None] | None = None
        self._span = None
        self._token = uuid.uuid4().hex[:12]
        self._sums: dict[str, BackgroundCentering] = {}  # center key -> this process's
        # space -> source -> mean of all processes (`center_key` splits the Redis key)
        self._means: dict[str, dict[str, torch.Tensor]] = {}
        self._centers_version = 1  # a new matrix has version 0: apply once at least

    # --- keys --------------------------------------------------------------------------
    def key(self, rq: RegisteredQuery) -> str:
        return f"{self._prefix}:calib:{rq.id}:{positives_fingerprint(rq)}"

    # --- per batch (event loop, no I/O) --------------------------------------------------
    def observe(self, matrix: PatternMatrix, best: torch.Tensor, sources: Sequence[str],
                ts: Sequence[int], only: str | None = None) -> None:
        """Count each item's best-positive score into the background of every auto query
        (or of the query `only`) that watches its source. `best` is [B, Q] as
        `PatternMatrix.scores` returns it."""
        cols, pending = self._columns(matrix)
        if not cols.size or not sources:
            return
        wanted = (np.ones(cols.size, bool) if only is None
                  else cols == matrix.query_ids.index(only))
        host = best[:, torch.from_numpy(cols)].detach().float().cpu().numpy()  # [B, Qa]
        finite = np.isfinite(host)  # -inf: a centered query before its mean is known
        bins = np.minimum(((np.clip(np.nan_to_num(host, neginf=-1.0), -1.0, 1.0) + 1.0)
                           * N_BINS / 2.0).astype(np.int64), N_BINS - 1)
        ts_arr = np.asarray(ts, np.int64)
        groups = np.asarray(pending.groups)
        for g in np.unique(groups).tolist():
            rows = np.asarray(matrix.sources.group_mask(g, sources))
            js = np.nonzero((groups == g) & wanted)[0]
            if not js.size:
                continue
            ok = finite[np.ix_(rows, js)] if rows.any() else np.zeros((0, js.size), bool)
            if not ok.any():
                continue
            sub_bins = bins[np.ix_(rows, js)]
            flat = (js[None, :] * N_BINS + sub_bins)[ok]
            uniq, n = np.unique(flat, return_counts=True)
            pending.flats.append(uniq)
            pending.counts.append(n)
            per_col = ok.sum(axis=0)
            seen = per_col > 0
            pending.n[js] += per_col
            row_ts = ts_arr[rows]
            row_ts = row_ts[plausible_now(row_ts)]
            if row_ts.size:
                pending.first[js[seen]] = np.minimum(pending.first[js[seen]], row_ts.min())
                pending.last[js[seen]] = np.maximum(pending.last[js[seen]], row_ts.max())
            pending.sources.setdefault(g, set()).update(
                s for s, keep in zip(sources, rows, strict=True) if keep)

    def _columns(self, matrix: PatternMatrix) -> tuple[np.ndarray, _Pending]:
        """The auto columns of `matrix` (computed once per matrix) and the pending counts of
        their backgrounds."""
        cached = self._by_matrix.get(matrix)
        if cached is None:
            auto = self._auto_columns(matrix)
            layout = (tuple(self.key(rq) for _, rq in auto),
                      tuple(matrix.sources.group_of(c) for c, _ in auto))
            cached = (np.asarray([c for c, _ in auto], np.int64), layout)
            self._by_matrix[matrix] = cached
        cols, layout = cached
        pending = self._pending.get(layout)
        if pending is None:
            pending = self._pending[layout] = _Pending(list(layout[0]), list(layout[1]))
        return cols, pending

    def observe_vectors(self, space: str, vectors: torch.Tensor, sources: Sequence[str]
                        ) -> None:
        """Add a batch's vectors to the running mean of each item's source (for centered
        queries); `space` is `<modality>:<model>`."""
        v = vectors.detach().to("cpu", torch.float64).numpy()
        for source, rows in _rows_by_source(sources).items():
            key = center_key(space, source)
            self._sums.setdefault(key, BackgroundCentering(v.shape[1])).update(v[rows])

    def apply(self, matrix: PatternMatrix, space: str | None = None) -> None:
        """Put the current auto thresholds (and the source means of `space`, for centered
        queries) into `matrix`; cheap when nothing changed."""
        if matrix.has_centered and space is not None:
            if matrix.centers_version != self._centers_version:
                matrix.set_centers(self._means.get(space, {}), version=self._centers_version)
        if matrix.thresholds_version == self._version:
            return
        values = {rq.id: self.threshold_of(rq) for _, rq in self._auto_columns(matrix)}
        matrix.set_thresholds(values, version=self._version)

    def threshold_of(self, rq: RegisteredQuery) -> float:
        """The threshold in force for `rq` (its own number, or the auto one)."""
        if not rq.query.auto_threshold:
            return float(rq.query.threshold)  # type: ignore[arg-type]
        cal = self._current.get(rq.id)
        return cal.choice.threshold if cal is not None else self.prior(rq)

    def describe(self, rq: RegisteredQuery) -> dict[str, Any]:
        """`effective_threshold` and, for auto queries, how it was chosen."""
        out: dict[str, Any] = {"effective_threshold": round(self.threshold_of(rq), 4)}
        if rq.query.auto_threshold:
            cal = self._current.get(rq.id)
            out["calibration"] = cal.as_dict() if cal is not None else {
                "threshold": round(self.prior(rq), 4), "basis": "prior",
                "background_items": 0, "expected_alerts_per_day": None}
        return out

    def prior(self, rq: RegisteredQuery) -> float:
        return starting_threshold(rq.query, self._registry.encoder(rq.query.modality))

    def _auto_columns(self, matrix: PatternMatrix) -> list[tuple[int, RegisteredQuery]]:
        out = []
        for c, qid in enumerate(matrix.query_ids):
            rq = self._registry.find(qid)
            if rq is not None and rq.query.auto_threshold:
                out.append((c, rq))
        return out

    # --- Redis ---------------------------------------------------------------------------
    async def flush(self) -> None:
        """Add the pending counts to Redis (one pipeline); they are dropped only once sent
        (a failed flush keeps them for the next one)."""
        # Batches observed while this flush awaits start fresh pending counts.
        batches = [(layout, p) for layout, p in self._pending.items() if p.flats]
        self._pending = {}
        if not batches:
            return
        if self._span is None:
            self._span = self._redis.register_script(_SPAN_SCRIPT)
        try:
            pipe = self._redis.pipeline(transaction=False)
            for _, p in batches:
                await self._queue(pipe, p)
            await pipe.execute()
        except BaseException:
            for layout, p in batches:
                self._pending.setdefault(layout, _Pending(p.keys, p.groups)).absorb(p)
            raise

    async def _queue(self, pipe: Any, p: _Pending) -> None:
        for key, bins in p.merged():
            for b, c in bins:
                pipe.hincrby(key, str(b), c)
            pipe.expire(key, BACKGROUND_TTL_S)
        for j in np.nonzero(p.n)[0].tolist():
            key = p.keys[j]
            pipe.pfadd(f"{key}:src", *sorted(p.sources.get(p.groups[j], ())))
            pipe.expire(f"{key}:src", BACKGROUND_TTL_S)
            if p.first[j] > p.last[j]:  # no plausible event time in these: count only
                pipe.hincrby(f"{key}:meta", "n", int(p.n[j]))
                pipe.expire(f"{key}:meta", BACKGROUND_TTL_S)
                continue
            await self._span(keys=[f"{key}:meta"], client=pipe, args=[
                int(p.n[j]), int(p.first[j]), int(p.last[j]), BACKGROUND_TTL_S])

    async def _sync_centers(self) -> None:
        """Write this process's running sums; read every process's, for the means."""
        if not self._sums:
            return
        keys = list(self._sums)
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            mine = self._sums[key]
            pipe.hset(f"{self._prefix}:center:{key}", self._token,
                      np.concatenate([[mine.n], mine.total]).tobytes())
            pipe.expire(f"{self._prefix}:center:{key}", BACKGROUND_TTL_S)
        await pipe.execute()
        for key, mean in (await self._read_means(keys)).items():
            space, source = split_center_key(key)
            self._means.setdefault(space, {})[source] = mean
        self._centers_version += 1

    async def _read_means(self, keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """The mean of each center key over every process's running sum, as Redis holds
        them now; keys whose sources have fewer than MIN_CENTER_ITEMS items are left out."""
        if not keys:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hvals(f"{self._prefix}:center:{key}")
        replies = await pipe.execute()
        means = {key: merged_mean(rows) for key, rows in zip(keys, replies, strict=True)}
        return {key: mean for key, mean in means.items() if mean is not None}

    async def source_means(self, space: str, sources: Iterable[str]) -> dict[str, torch.Tensor]:
        """Each source's mean in `space` from Redis (every worker's items, the same values
        the live matching centers on): a preview of a centered query needs the means of
        sources this process may never have seen."""
        wanted = sorted(set(sources))
        means = await self._read_means([center_key(space, s) for s in wanted])
        return {split_center_key(key)[1]: mean for key, mean in means.items()}

    async def refresh(self) -> None:
        """Flush, then re-derive the threshold of every auto query whose background count
        moved since this worker last derived it (from the merged histogram in Redis)."""
        await self.flush()
        await self._sync_centers()
        queries = []
        for rq in self._registry.all():
            if rq.query.auto_threshold:
                queries.append(rq)
            else:
                self._metrics.query_threshold.labels(query_id=rq.id).set(self.threshold_of(rq))
        metas = await self._read_metas(queries)
        # Re-derive what changed: the background's count (any worker's flush) or the query.
        basis = {rq.id: (rq.fingerprint, _int(metas[rq.id][0].get("n")) or 0) for rq in queries}
        moved = [rq for rq in queries
                 if rq.id not in self._current or self._basis.get(rq.id) != basis[rq.id]]
        stale = {rq.id for rq in moved}
        current = {rq.id: self._current[rq.id] for rq in queries if rq.id not in stale}
        hists = await self._read_histograms(moved)
        updates = self._redis.pipeline(transaction=False)
        for rq in moved:
            meta, n_sources = metas[rq.id]
            cal = current[rq.id] = self._derive(rq, hists[rq.id], meta, n_sources)
            fields = _meta_fields(cal)
            if any(meta.get(k, "") != v for k, v in fields.items()):
                updates.hset(f"{self.key(rq)}:meta", mapping=fields)
            self._export(rq.id, cal)
        await updates.execute()
        changed = {q: c.choice.threshold for q, c in current.items()} != {
            q: c.choice.threshold for q, c in self._current.items()}
        self._current, self._basis = current, basis
        if changed:
            self._version += 1

    async def _read_metas(self, queries: list[RegisteredQuery]
                          ) -> dict[str, tuple[dict[str, str], int]]:
        """Per query its meta hash and how many sources its background has seen."""
        pipe = self._redis.pipeline(transaction=False)
        for rq in queries:
            pipe.hgetall(f"{self.key(rq)}:meta")
            pipe.pfcount(f"{self.key(rq)}:src")
        raw = await pipe.execute() if queries else []
        return {rq.id: (_decoded(raw[2 * i]), int(raw[2 * i + 1] or 0))
                for i, rq in enumerate(queries)}

    async def _read_histograms(self, queries: list[RegisteredQuery]
                               ) -> dict[str, ScoreHistogram]:
        pipe = self._redis.pipeline(transaction=False)
        for rq in queries:
            pipe.hgetall(self.key(rq))
        raw = await pipe.execute() if queries else []
        return {rq.id: ScoreHistogram.from_dict(h, N_BINS) for rq, h in zip(queries, raw,
                                                                         strict=True)}

    def _derive(self, rq: RegisteredQuery, hist: ScoreHistogram, meta: dict[str, str],
                n_sources: int) -> Calibration:
        per_source_day = _items_per_source_day(meta, n_sources)
        cfg = self.config
        choice = choose_threshold(
            hist, items_per_day=per_source_day or 86_400.0,
            target_per_day=rq.query.target_per_day, prior=self.prior(rq),
            min_background=cfg.min_background, full_background=cfg.full_background,
            tail_fraction=cfg.tail_fraction, trim_fraction=cfg.trim_fraction,
            floor_mad_k=cfg.floor_mad_k, floor_margin=cfg.floor_margin)
        if choice.expected_per_day is None and hist.count and per_source_day:
            # cold start: no tail model yet, but the background seen so far still says how
            # often the prior would have fired
            choice = dataclasses.replace(
                choice, expected_per_day=hist.survival(choice.threshold) * per_source_day)
        previous = _float(meta.get("threshold"))  # what the last worker to derive it wrote
        moved_at = _int(meta.get("moved_at"))
        if previous is None or abs(previous - choice.threshold) > MOVE_EPSILON:
            moved_at = int(time.time() * 1000)
        return Calibration(choice, per_source_day, n_sources, moved_at)

    def _export(self, query_id: str, cal: Calibration) -> None:
        m = self._metrics
        m.query_threshold.labels(query_id=query_id).set(cal.choice.threshold)
        m.query_background_items.labels(query_id=query_id).set(cal.choice.background_n)
        if cal.choice.expected_per_day is not None:
            m.query_expected_alerts.labels(query_id=query_id).set(cal.choice.expected_per_day)

    async def histogram(self, rq: RegisteredQuery) -> ScoreHistogram:
        """The merged background of `rq` as Redis holds it now (for `query explain`)."""
        await self.flush()
        return ScoreHistogram.from_dict(await self._redis.hgetall(self.key(rq)), N_BINS)

    async def forget(self, query_id: str) -> None:
        """Drop a deleted query's backgrounds (every pattern set it had)."""
        keys = [k async for k in self._redis.scan_iter(match=f"{self._prefix}:calib:{query_id}:*")]
        if keys:
            await self._redis.delete(*keys)
        self._current.pop(query_id, None)
        self._basis.pop(query_id, None)
        self._version += 1
        for gauge in (self._metrics.query_threshold, self._metrics.query_background_items,
                      self._metrics.query_expected_alerts, self._metrics.query_precision):
            with contextlib.suppress(KeyError):
                gauge.remove(query_id)

    async def seed(self, rq: RegisteredQuery, matrix: PatternMatrix, store: IndexStore) -> int:
        """Score `rq` against the newest items its modality retains (a sample of the stream,
        not the items nearest to it) and count those its sources watch as its first
        background; returns how many. Skipped when it already has one. Only `rq`'s own
        background is touched, and the scoring runs off the event loop."""
        if not rq.query.auto_threshold or await self._redis.exists(self.key(rq)):
            return 0
        items = [s for s in await store.get_many(await store.recent(SEED_ITEMS))
                 if len(s.vector) == matrix.dim]
        if not items:
            return 0
        vectors = torch.stack([torch.as_tensor(np.asarray(s.vector, np.float32)) for s in items])
        sources = [s.source for s in items]
        best = await asyncio.to_thread(_scores, matrix, vectors, sources)
        self.observe(matrix, best, sources, [s.ts_ms for s in items], only=rq.id)
        await self.refresh()
        return len(items)

    # --- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Refresh until cancelled (thresholds keep their last value while one fails)."""
        await every(self.refresh_s, self.refresh, "auto-threshold refresh")

    def start(self) -> None:
        self._task = start_task(self._task, self.run, "thresholds")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        with contextlib.suppress(Exception):
            await self.flush()


def _scores(matrix: PatternMatrix, vectors: torch.Tensor, sources: Sequence[str]
            ) -> torch.Tensor:
    with torch.inference_mode():
        return matrix.scores(vectors, sources)[0]


def center_space(modality: Any, encoder: Any) -> str:
    """`<modality>:<model>`: the space whose source means center an encoder's queries
    (the live matching and the preview name it the same way)."""
    return f"{getattr(modality, 'value', modality)}:{encoder.short_id}"


def merged_mean(rows: Iterable[bytes | None]) -> torch.Tensor | None:
    """One source's mean from every process's running sum (`[n, sum...]` as float64
    bytes); None when the sums disagree in size or hold fewer than MIN_CENTER_ITEMS items
    (a source that new scores -inf on centered queries, live and in a preview alike)."""
    parts = [np.frombuffer(r, dtype=np.float64) for r in rows if r]
    if not parts or len({p.size for p in parts}) != 1:
        return None
    total = np.sum(parts, axis=0)
    if total[0] < MIN_CENTER_ITEMS:
        return None
    return torch.from_numpy(total[1:] / total[0]).float()


def center_key(space: str, source: str) -> str:
    """`<modality>:<model>:<source>`: neither a modality nor a model's short id holds a ':',
    so the source (which may) is everything after the second one."""
    return f"{space}:{source}"


def split_center_key(key: str) -> tuple[str, str]:
    modality, model, source = key.split(":", 2)
    return f"{modality}:{model}", source


def _rows_by_source(sources: Sequence[str]) -> dict[str, list[int]]:
    rows: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        rows.setdefault(source, []).append(i)
    return rows


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else str(k)):
            (v.decode() if isinstance(v, bytes) else str(v)) for k, v in raw.items()}


def _int(value: str | None) -> int | None:
    return None if value in (None, "") else int(float(value))


def _float(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


def _items_per_source_day(meta: dict[str, str], n_sources: int) -> float | None:
    """Items a day per watched source, from the background's count and event-time span
    (only plausible event times enter the span: see `plausible_now`)."""
    n, lo, hi = _int(meta.get("n")), _int(meta.get("first_ts")), _int(meta.get("last_ts"))
    if not n or lo is None or hi is None or n < 2:
        return None
    return n / (max(hi - lo, 1_000) / 86_400_000) / max(n_sources, 1)


def plausible_now(ts_ms: np.ndarray | int) -> np.ndarray | bool:
    """Event times that may measure a rate: not more than a day ahead of this worker's clock
    (one device clock in 2036 would stretch every span for good). Old times are fine: a
    replay of last year's recordings has a real event-time rate."""
    return ts_ms <= time.time() * 1000 + MAX_FUTURE_SKEW_MS


def _meta_fields(cal: Calibration) -> dict[str, str]:
    c = cal.choice
    return {"threshold": f"{c.threshold:.6f}", "source": c.source,
            "expected_per_day": "" if c.expected_per_day is None else f"{c.expected_per_day:.6g}",
            "moved_at": "" if cal.moved_at_ms is None else str(cal.moved_at_ms)}
