"""`threshold: auto` (streams.queries.thresholds): synthetic backgrounds with known tails,
histogram algebra, priors and centering."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from streams.queries.thresholds import (
    BackgroundCentering,
    ScoreHistogram,
    choose_threshold,
    fit_gpd_tail,
    needs_centering,
    prior_for,
    upper_gap,
)

scores_st = st.lists(st.floats(-1.0, 1.0, allow_nan=False), max_size=200)

# --------------------------------------------------------------------------- histogram


@given(scores_st, scores_st, scores_st)
@settings(max_examples=60, deadline=None)
def test_merge_is_associative_and_commutative(a, b, c):
    ha, hb, hc = ScoreHistogram.of(a), ScoreHistogram.of(b), ScoreHistogram.of(c)
    assert ha.merge(hb) == hb.merge(ha)
    assert (ha + hb) + hc == ha + (hb + hc)
    assert (ha + hb + hc) == ScoreHistogram.of(a + b + c)
    assert (ha + hb).count == len(a) + len(b)


@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=300),
       st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20))
@settings(max_examples=80, deadline=None)
def test_quantiles_are_monotone_and_within_the_data(scores, qs):
    h = ScoreHistogram.of(scores)
    qs = sorted(qs)
    values = [h.quantile(q) for q in qs]
    assert all(x <= y + 1e-12 for x, y in zip(values, values[1:], strict=False))
    slack = h.width + 1e-9  # one bin, plus float rounding of the bin edges
    assert min(scores) - slack <= values[0] and values[-1] <= max(scores) + slack


@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=300),
       st.floats(-1.0, 1.0))
@settings(max_examples=80, deadline=None)
def test_survival_matches_the_data_to_one_bin(scores, x):
    h = ScoreHistogram.of(scores)
    lo = sum(s > x + h.width for s in scores) / len(scores)
    hi = sum(s > x - h.width for s in scores) / len(scores)
    assert lo - 1e-9 <= h.survival(x) <= hi + 1e-9


def test_sparse_dict_round_trip_and_redis_increments():
    scores = [0.1, 0.1, 0.5, -0.99, 1.0, -1.0]
    h = ScoreHistogram.of(scores)
    d = h.to_dict()
    assert sum(d.values()) == 6 and len(d) == 5
    assert ScoreHistogram.from_dict(d) == h
    raw = {k.encode(): str(v).encode() for k, v in d.items()}  # what HGETALL returns
    assert ScoreHistogram.from_dict(raw) == h
    inc = ScoreHistogram().increments(scores)
    assert ScoreHistogram.from_dict(inc) == h
    with pytest.raises(ValueError):
        ScoreHistogram.of([float("nan")])
    with pytest.raises(ValueError):
        ScoreHistogram().quantile(0.5)


# --------------------------------------------------------------------------- threshold

P_TARGET = 1e-3
ITEMS_PER_DAY = 100_000.0
TARGET_PER_DAY = P_TARGET * ITEMS_PER_DAY


def _normal(rng):
    return stats.norm(0.1, 0.05), None


def _beta(rng):
    # a bounded, skewed score distribution on [-0.2, 0.6]
    return stats.beta(2.0, 5.0, loc=-0.2, scale=0.8), None


def _mixture(rng):
    # two cameras with different scenes: 70% N(0.05, .03), 30% N(0.2, .04)
    return None, [(0.7, stats.norm(0.05, 0.03)), (0.3, stats.norm(0.2, 0.04))]


def _sample(dist, mix, n, rng):
    if dist is not None:
        return dist.rvs(size=n, random_state=rng)
    parts = [d.rvs(size=int(round(w * n)), random_state=rng) for w, d in mix]
    return np.concatenate(parts)


def _true_survival(dist, mix, x):
    if dist is not None:
        return float(dist.sf(x))
    return float(sum(w * d.sf(x) for w, d in mix))


@pytest.mark.parametrize("make", [_normal, _beta, _mixture])
@pytest.mark.parametrize("planted", [0, 30])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_false_alarm_rate_within_factor_two_of_target(make, planted, seed):
    """The background's exceedance probability at the chosen threshold (known exactly from
    the distribution) is within [p/2, 2p], also with true matches planted in it."""
    rng = np.random.default_rng(seed)
    dist, mix = make(rng)
    bg = _sample(dist, mix, 50_000, rng)
    matches = rng.uniform(0.8, 0.95, size=planted)  # a few real events inside the background
    h = ScoreHistogram.of(np.concatenate([bg, matches]))
    c = choose_threshold(h, items_per_day=ITEMS_PER_DAY, target_per_day=TARGET_PER_DAY,
                         prior=0.5, full_background=0)
    assert c.source == "background"
    far = _true_survival(dist, mix, c.threshold)
    assert P_TARGET / 2 <= far <= 2 * P_TARGET, (c.threshold, far, c.as_dict())
    assert c.threshold < 0.8  # the planted matches stay above it
    assert c.expected_per_day is not None and c.expected_per_day < 3 * TARGET_PER_DAY


def test_lower_target_gives_higher_threshold():
    rng = np.random.default_rng(5)
    h = ScoreHistogram.of(rng.normal(0.1, 0.05, 50_000))
    thr = [choose_threshold(h, items_per_day=1e5, target_per_day=t, prior=0.5,
                            full_background=0).threshold for t in (1000, 100, 10, 1)]
    assert thr == sorted(thr) and thr[0] < thr[-1]


def test_cold_start_uses_the_prior_then_blends_then_background():
    rng = np.random.default_rng(0)
    scores = rng.normal(0.1, 0.05, 1000)
    kw = dict(items_per_day=1e5, target_per_day=10, prior=0.6, min_background=60,
              full_background=600)
    c0 = choose_threshold(ScoreHistogram.of(scores[:30]), **kw)
    assert (c0.source, c0.threshold) == ("prior", 0.6)
    c1 = choose_threshold(ScoreHistogram.of(scores[:300]), **kw)
    c2 = choose_threshold(ScoreHistogram.of(scores), **kw)
    assert c1.source == "blend" and c2.source == "background"
    assert c2.threshold < c1.threshold < 0.6


def test_a_dense_cluster_of_matches_is_set_aside_not_fitted():
    """9% of the items are matches (a busy scenario): the gap puts them outside the fit."""
    rng = np.random.default_rng(3)
    bg = rng.normal(0.07, 0.02, 650)
    matches = rng.normal(0.9, 0.02, 66)
    h = ScoreHistogram.of(np.concatenate([bg, matches]))
    gap = upper_gap(h)
    assert gap is not None and gap[0] < 0.2 and gap[1] > 0.8
    c = choose_threshold(h, items_per_day=6 * 86_400, target_per_day=3, prior=0.4,
                         full_background=0)
    assert bg.max() < c.threshold < matches.min()


def test_gpd_fit_recovers_an_exponential_tail():
    rng = np.random.default_rng(11)
    h = ScoreHistogram.of(np.clip(rng.exponential(0.05, 100_000) - 0.5, -1, 1))
    fit = fit_gpd_tail(h)
    assert fit is not None and -0.15 <= fit.xi <= 0.0
    assert abs(fit.sigma - 0.05) < 0.01


def test_priors_and_centering_table():
    assert prior_for("efficientnet-lite0-minilm-93508cda", "text") < prior_for(
        "efficientnet-lite0-minilm-93508cda", "example")
    assert prior_for("unknown-encoder", "text") == 0.5
    assert needs_centering("aisfx-7cebc4d3", "example")
    assert not needs_centering("minilm-8cdaccac", "text")


def test_centering_removes_the_shared_direction():
    """Noise vectors all near one direction: raw cosine to a noisy example is high for all;
    after centering, noise scores around 0 and a real event stands out."""
    rng = np.random.default_rng(2)
    d = 64
    common = rng.normal(size=d)
    common /= np.linalg.norm(common)
    event_dir = rng.normal(size=d)
    event_dir /= np.linalg.norm(event_dir)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    noise = unit(common + 0.3 * rng.normal(size=(500, d)) / math.sqrt(d))
    example = unit(common + 0.6 * event_dir)
    event = unit(common + 0.6 * event_dir + 0.3 * rng.normal(size=(5, d)) / math.sqrt(d))
    raw_noise = noise @ example
    assert np.median(raw_noise) > 0.7  # degenerate: noise looks like the pattern
    cen = BackgroundCentering(d)
    cen.update(noise)
    c_noise = cen.center(noise) @ cen.center(example[None, :])[0]
    c_event = cen.center(event) @ cen.center(example[None, :])[0]
    assert abs(np.median(c_noise)) < 0.2 and c_event.min() > c_noise.max()
