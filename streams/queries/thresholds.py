"""Thresholds Lookout chooses itself (`threshold: auto`) and incidents instead of a cooldown.

Pure logic: numpy only, no Redis, Kafka or torch, so the worker, the API, the CLI and the
offline benchmark (`benchmarks/auto_threshold_eval.py`) all share one rule and unit tests
can check it on synthetic distributions with known tails.

Why a background distribution and not a user-given number
----------------------------------------------------------
Cosine scores mean different things per encoder and per query kind: a text query on frames
(EfficientNet label bridge) scores 0.1-0.35 on real matches, an aisfx audio example scores
0.67-0.83 on plain room noise. No single default works. What every query does have, without
any ground truth, is the stream of scores it gives to the items it watches; almost all of
them are NOT matches (monitoring: events are rare). So each query keeps a
`ScoreHistogram` of its own scores (the "background"), and the threshold is placed where
that background would exceed it at a chosen false-alarm rate (`choose_threshold`), read off
a tail model (peaks over threshold with a generalized Pareto distribution) rather than off
the few highest observations, because the target rate is far beyond what a few thousand
items can show directly and because the very top of the background holds the true matches.

The histogram is a fixed grid of counts, so it merges by adding counts: in Redis it is one
hash per query (field = bin index, value = count) updated with HINCRBY by every worker; it
survives restarts and needs no coordination.

Incidents
---------
`IncidentTracker` replaces the cooldown of `streams.alert_policy`: per (query, source) an
incident is a run of items at or above `threshold - hysteresis` with no gap of `clear_s` or
more, confirmed by `min_hits` items at or above `threshold` within `window_s`; one alert per
incident. The incidents are a function of the SET of observations (connected components in
event time), not of their arrival order; late items that bridge two incidents that already
alerted merge them (the later alert is withdrawn), so the number of live alerts is the same
for every arrival order, and a redelivered item never fires twice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "ScoreHistogram", "TailFit", "ThresholdChoice", "fit_gpd_tail", "choose_threshold",
    "PRIORS", "prior_for", "CalibrationConfig", "BackgroundCentering",
    "IncidentRule", "IncidentTracker", "IncidentAction", "incident_alert_id",
]

# --------------------------------------------------------------------------------------
# Histogram
# --------------------------------------------------------------------------------------

N_BINS = 2000
"""Bins over [-1, 1]: width 0.001, finer than any threshold anyone would set by hand."""


class ScoreHistogram:
    """Counts of cosine scores on a fixed grid over [-1, 1] (values outside are clipped).

    Mergeable by adding counts (associative, commutative), so many workers can update one
    Redis hash with HINCRBY and any subset of partial histograms adds up to the same thing.
    Quantiles interpolate linearly inside a bin (error at most one bin width, 0.001).
    """

    __slots__ = ("counts",)

    def __init__(self, counts: np.ndarray | None = None, n_bins: int = N_BINS) -> None:
        if counts is None:
            counts = np.zeros(n_bins, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.int64)
        if self.counts.ndim != 1 or self.counts.size < 2:
            raise ValueError("counts must be a 1-d array of at least 2 bins")
        if (self.counts < 0).any():
            raise ValueError("counts must be non-negative")

    # -- grid ---------------------------------------------------------------------------
    @property
    def n_bins(self) -> int:
        return int(self.counts.size)

    @property
    def width(self) -> float:
        return 2.0 / self.n_bins

    def edges(self) -> np.ndarray:
        return np.linspace(-1.0, 1.0, self.n_bins + 1)

    def centers(self) -> np.ndarray:
        e = self.edges()
        return (e[:-1] + e[1:]) / 2

    def bin_of(self, scores: np.ndarray | Iterable[float]) -> np.ndarray:
        """Bin index of each score (NaN is rejected: a NaN score is a bug upstream)."""
        s = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores,
                       dtype=np.float64).ravel()
        if np.isnan(s).any():
            raise ValueError("NaN score")
        idx = np.floor((np.clip(s, -1.0, 1.0) + 1.0) / self.width).astype(np.int64)
        return np.clip(idx, 0, self.n_bins - 1)

    # -- updates ------------------------------------------------------------------------
    def add(self, scores: np.ndarray | Iterable[float]) -> ScoreHistogram:
        """Count `scores` in place; returns self. The sparse increments for Redis HINCRBY
        are `increments(scores)`."""
        idx = self.bin_of(scores)
        if idx.size:
            self.counts += np.bincount(idx, minlength=self.n_bins)
        return self

    def increments(self, scores: np.ndarray | Iterable[float]) -> dict[str, int]:
        """{bin: count} to HINCRBY for `scores` (what a worker sends per batch)."""
        idx, n = np.unique(self.bin_of(scores), return_counts=True)
        return {str(int(i)): int(c) for i, c in zip(idx, n, strict=True)}

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        """A new histogram holding both (the sum of counts)."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge {self.n_bins} bins with {other.n_bins}")
        return ScoreHistogram(self.counts + other.counts)

    __add__ = merge

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScoreHistogram) and np.array_equal(self.counts, other.counts)

    def __hash__(self) -> int:  # pragma: no cover - mutable, but keep dataclass-like semantics
        return id(self)

    def copy(self) -> ScoreHistogram:
        return ScoreHistogram(self.counts.copy())

    # -- queries ------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float | np.ndarray) -> float | np.ndarray:
        """Inverse CDF with linear interpolation inside a bin; monotone in q."""
        n = self.count
        if n == 0:
            raise ValueError("quantile of an empty histogram")
        qa = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
        cum = np.concatenate([[0.0], np.cumsum(self.counts, dtype=np.float64)]) / n
        # cum is non-decreasing over the edges; interp needs strictly increasing xp, so
        # interpolate over the bins with mass only (flat stretches carry no quantiles).
        keep = np.concatenate([[True], self.counts > 0])
        out = np.interp(qa, cum[keep], self.edges()[keep])
        return float(out) if out.ndim == 0 else out

    def survival(self, x: float) -> float:
        """Fraction of the counted scores above `x` (linear inside the bin holding x)."""
        n = self.count
        if n == 0:
            return 0.0
        if x >= 1.0:
            return 0.0
        if x < -1.0:
            return 1.0
        pos = (x + 1.0) / self.width
        i = min(int(math.floor(pos)), self.n_bins - 1)
        frac_above_in_bin = 1.0 - (pos - i)
        above = float(self.counts[i + 1:].sum()) + frac_above_in_bin * float(self.counts[i])
        return above / n

    def mean_std(self) -> tuple[float, float]:
        n = self.count
        if n == 0:
            raise ValueError("empty histogram")
        c = self.centers()
        mu = float((c * self.counts).sum() / n)
        var = float((((c - mu) ** 2) * self.counts).sum() / n)
        return mu, math.sqrt(max(var, 0.0))

    def median_mad(self) -> tuple[float, float]:
        """Median and the median absolute deviation (robust to the true matches inside)."""
        med = float(self.quantile(0.5))
        c = self.centers()
        dev = np.abs(c - med)
        order = np.argsort(dev, kind="stable")
        cum = np.cumsum(self.counts[order])
        k = int(np.searchsorted(cum, self.count / 2.0))
        return med, float(dev[order][min(k, len(order) - 1)]) + self.width / 2

    # -- storage ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int]:
        """Sparse {bin index: count} (the Redis hash)."""
        nz = np.nonzero(self.counts)[0]
        return {str(int(i)): int(self.counts[i]) for i in nz}

    @classmethod
    def from_dict(cls, data: Mapping[str | bytes | int, str | bytes | int],
                  n_bins: int = N_BINS) -> ScoreHistogram:
        """From the sparse form (HGETALL gives bytes keys and values)."""
        counts = np.zeros(n_bins, dtype=np.int64)
        for k, v in data.items():
            i = int(k.decode() if isinstance(k, bytes) else k)
            if not 0 <= i < n_bins:
                raise ValueError(f"bin {i} outside 0..{n_bins - 1}")
            counts[i] += int(v.decode() if isinstance(v, bytes) else v)
        return cls(counts)

    @classmethod
    def of(cls, scores: np.ndarray | Iterable[float], n_bins: int = N_BINS) -> ScoreHistogram:
        return cls(n_bins=n_bins).add(scores)


# --------------------------------------------------------------------------------------
# Tail model
# --------------------------------------------------------------------------------------

XI_BOUNDS = (-0.5, 0.25)
"""Generalized Pareto shape bounds. Cosine scores are bounded above (1.0), so the true
shape is <= 0 (a short tail with an end point); a little positive room absorbs the noise
of the estimate on small samples without letting one wild fit send the threshold to 1."""


@dataclass(frozen=True)
class TailFit:
    """Generalized Pareto model of the scores above `u`: P(S > u + y | S > u) = G(y).

    G(y) = (1 + xi * y / sigma) ** (-1 / xi)  (xi -> 0: exp(-y / sigma)).
    `zeta` is P(S > u) in the background.
    """

    u: float
    sigma: float
    xi: float
    zeta: float
    n_exceed: int

    def quantile_at(self, p: float) -> float:
        """The score exceeded with probability `p` (p < zeta) under the model."""
        s = p / self.zeta
        if s >= 1.0:
            return self.u
        if abs(self.xi) < 1e-6:
            return self.u - self.sigma * math.log(s)
        return self.u + self.sigma / self.xi * (s ** (-self.xi) - 1.0)

    def survival(self, x: float) -> float:
        """P(S > x) under the model (x >= u)."""
        if x <= self.u:
            return self.zeta
        y = x - self.u
        if abs(self.xi) < 1e-6:
            return self.zeta * math.exp(-y / self.sigma)
        base = 1.0 + self.xi * y / self.sigma
        if base <= 0.0:
            return 0.0
        return self.zeta * base ** (-1.0 / self.xi)


def fit_gpd_tail(hist: ScoreHistogram, *, tail_fraction: float = 0.1,
                 trim_fraction: float = 0.3, min_exceed: int = 20) -> TailFit | None:
    """Robust peaks-over-threshold fit of the background's upper tail.

    u is the (1 - tail_fraction) quantile. The GPD is fitted by least squares between the
    empirical and the model QUANTILES of the exceedances, at conditional exceedance levels
    from 1 down to `trim_fraction` only: the top `trim_fraction` of the exceedances (where
    the true matches sit, since they score highest) never enters the fit, so a handful of
    real events inside the background - or a dense scenario where they are several % of
    the items - cannot drag the threshold up onto themselves. Quantile matching with a
    bounded shape (`XI_BOUNDS`) is a trimmed L-estimator: it tolerates contamination up to
    trim_fraction * tail_fraction of all items. Given xi the model quantile is linear in
    sigma, so sigma has a closed form and xi is found on a fine grid.

    Returns None when fewer than `min_exceed` items exceed u.
    """
    n = hist.count
    if n == 0:
        return None
    tail_fraction = float(np.clip(tail_fraction, 1e-4, 0.9))
    n_exc = int(round(n * tail_fraction))
    if n_exc < min_exceed:
        return None
    u = float(hist.quantile(1.0 - tail_fraction))
    # Conditional survival levels s in [trim, 1): the exceedance quantiles used in the fit.
    levels = np.linspace(1.0, max(trim_fraction, 1.0 / n_exc), 41)[1:]
    y = np.asarray(hist.quantile(1.0 - tail_fraction * levels)) - u
    y = np.maximum(y, 0.0)
    if y[-1] <= hist.width:  # the tail is one spike: nothing to fit
        return TailFit(u, hist.width, -0.5, tail_fraction, n_exc)
    best: tuple[float, float, float] | None = None
    for xi in np.linspace(XI_BOUNDS[0], XI_BOUNDS[1], 151):
        g = -np.log(levels) if abs(xi) < 1e-9 else (levels ** (-xi) - 1.0) / xi
        sigma = float((g * y).sum() / (g * g).sum())
        if sigma <= 0:
            continue
        err = float(((y - sigma * g) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, float(xi), sigma)
    if best is None:
        return None
    _, xi, sigma = best
    return TailFit(u, max(sigma, 1e-6), xi, tail_fraction, n_exc)


# --------------------------------------------------------------------------------------
# Threshold rule
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationConfig:
    """The knobs of `threshold: auto` (defaults used by the benchmark and proposed for the
    worker). Rates are per watched source: a query over 3 cameras at 2 fps sees
    3 * 172_800 items a day and may raise 3 * target_per_source_day false alarms."""

    target_per_source_day: float = 1.0
    min_background: int = 60
    full_background: int = 200
    tail_fraction: float = 0.1
    trim_fraction: float = 0.3
    floor_mad_k: float = 6.0
    floor_margin: float = 0.02


@dataclass(frozen=True)
class ThresholdChoice:
    """What `choose_threshold` decided and why (shown by `lookout query show/explain`)."""

    threshold: float
    source: Literal["prior", "background", "blend"]
    background_n: int
    expected_per_day: float | None
    target_p: float
    tail: TailFit | None = None
    floor: float | None = None
    tail_threshold: float | None = None
    prior: float | None = None

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["tail"] = asdict(self.tail) if self.tail else None
        return d


def noise_floor(hist: ScoreHistogram, *, mad_k: float = 6.0, margin: float = 0.02) -> float:
    """The lowest threshold that still separates a pattern from the background's noise:
    median + mad_k * (1.4826 * MAD), and at least `margin` above the background's 99th
    percentile. Robust (median/MAD ignore up to half the items being anything at all), and
    it stops a thin or mis-fitted tail from placing the threshold inside the bulk."""
    med, mad = hist.median_mad()
    robust = med + mad_k * 1.4826 * mad
    return float(max(robust, float(hist.quantile(0.99)) + margin))


def choose_threshold(hist: ScoreHistogram, *, items_per_day: float, target_per_day: float,
                     prior: float, min_background: int = 60, full_background: int = 200,
                     tail_fraction: float = 0.1, trim_fraction: float = 0.3,
                     floor_mad_k: float = 6.0, floor_margin: float = 0.02) -> ThresholdChoice:
    """Threshold where the background exceeds at most target_per_day / items_per_day.

    - below `min_background` scores: the prior (per encoder and query kind, `PRIORS`);
    - between min_background and full_background: a blend that moves linearly from the
      prior to the background rule, so the threshold does not jump on the first window;
    - otherwise: max(tail-model quantile at p, noise floor), capped below 1.
    `expected_per_day` is the tail model's exceedance rate at the chosen threshold times
    items_per_day (per item, before min_hits; an upper bound on incidents a day).
    """
    if items_per_day <= 0 or target_per_day <= 0:
        raise ValueError("items_per_day and target_per_day must be positive")
    p = float(np.clip(target_per_day / items_per_day, 1e-12, 0.5))
    n = hist.count
    if n < min_background:
        return ThresholdChoice(float(prior), "prior", n, None, p, prior=float(prior))
    fit = fit_gpd_tail(hist, tail_fraction=tail_fraction, trim_fraction=trim_fraction)
    floor = noise_floor(hist, mad_k=floor_mad_k, margin=floor_margin)
    if fit is not None and p < fit.zeta:
        tail_thr = fit.quantile_at(p)
    else:
        tail_thr = float(hist.quantile(1.0 - p))
    bg = float(min(max(tail_thr, floor), 0.999))
    if fit is not None:
        expected = fit.survival(bg) * items_per_day
    else:
        expected = hist.survival(bg) * items_per_day
    if n < full_background:
        w = (n - min_background) / max(full_background - min_background, 1)
        thr = (1 - w) * float(prior) + w * bg
        return ThresholdChoice(float(thr), "blend", n, expected, p, fit, floor, tail_thr,
                               float(prior))
    return ThresholdChoice(bg, "background", n, expected, p, fit, floor, tail_thr,
                           float(prior))


# Cold-start priors: (encoder short id, query kind) -> threshold. Filled in from
# measurements, see PRIORS_MEASURED below.
PRIORS: dict[tuple[str, str], float] = {}
DEFAULT_PRIOR = 0.5


def prior_for(encoder_short_id: str, kind: str) -> float:
    """Cold-start threshold for a query of `kind` ("text" or "example") on an encoder.

    Unknown encoders fall back to the encoder family (prefix before the first ':' or '@'),
    then to DEFAULT_PRIOR."""
    key = (encoder_short_id, kind)
    if key in PRIORS:
        return PRIORS[key]
    family = encoder_short_id.split(":")[0].split("@")[0]
    for (enc, k), v in PRIORS.items():
        if k == kind and enc.split(":")[0].split("@")[0] == family:
            return v
    return DEFAULT_PRIOR


# --------------------------------------------------------------------------------------
# Degenerate backgrounds: centering
# --------------------------------------------------------------------------------------


class BackgroundCentering:
    """Running mean vector of a modality's items; cosine after subtracting it.

    When most items of a modality sit in one narrow cone (room noise for aisfx, blank or
    static frames for an image encoder), raw cosine to any example of that modality is high
    for all of them: the shared direction dominates the dot product. Subtracting the
    modality's mean vector from items AND patterns before the cosine removes that shared
    component (the classic hubness fix), so scores measure what differs from the usual
    background. The mean is a sum and a count, mergeable like the histogram (in Redis: a
    float vector per modality, updated per batch).
    """

    def __init__(self, dim: int) -> None:
        self.total = np.zeros(dim, dtype=np.float64)
        self.n = 0

    def update(self, vectors: np.ndarray) -> None:
        v = np.asarray(vectors, dtype=np.float64)
        if v.ndim == 1:
            v = v[None, :]
        self.total += v.sum(axis=0)
        self.n += int(v.shape[0])

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.n, 1)

    def center(self, vectors: np.ndarray) -> np.ndarray:
        """Centered, re-normalised vectors (unit length again, so the dot is a cosine)."""
        v = np.asarray(vectors, dtype=np.float64) - self.mean
        norm = np.linalg.norm(v, axis=-1, keepdims=True)
        return v / np.maximum(norm, 1e-12)


# --------------------------------------------------------------------------------------
# Incidents
# --------------------------------------------------------------------------------------


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
            "i": [[i.alert_id, i.start_t, i.end_t, i.peak, int(i.closed)]
                  for i in self.incidents],
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
        tr.incidents = [_Incident(str(a), float(s), float(e), float(p), bool(c))
                        for a, s, e, p, c in d.get("i", [])]
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
            return []  # redelivery: already counted, its alert (if any) already exists
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
                inc = _Incident(incident_alert_id(self.query_id, comp[0].key), c0, c1,
                                peak_o.score)
                self.incidents.append(inc)
                actions.append(IncidentAction("open", inc.alert_id, hit.t, hit.key, hit.score))
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
