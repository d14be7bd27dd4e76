"""PatternMatrix: one product, per-query max over positives, negatives, threshold, sources."""

from __future__ import annotations

import fnmatch

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.queries.matching import PatternMatrix, QueryPatterns

D = 8


def unit(*rows):
    t = torch.tensor(rows, dtype=torch.float32)
    return t / t.norm(dim=1, keepdim=True)


def e(i):
    v = [0.0] * D
    v[i] = 1.0
    return v


def qp(qid, pos, neg=None, threshold=0.5, margin=0.0, sources=("*",)):
    return QueryPatterns(qid, unit(*pos), unit(*neg) if neg else torch.zeros(0, D),
                         threshold, margin, tuple(sources))


def test_best_positive_per_query_and_threshold():
    m = PatternMatrix([qp("a", [e(0), e(1)]), qp("b", [e(2)], threshold=0.9)], D, "cpu")
    items = unit(e(1), [1, 0, 1, 0, 0, 0, 0, 0])
    matches = m.match(items, ["s1", "s2"])
    got = {(x.row, x.query_id): round(x.score, 4) for x in matches}
    # item0 == e1 -> query a (second positive) at 1.0; item1 halfway a/b: 0.7071 passes a only
    assert got == {(0, "a"): 1.0, (1, "a"): 0.7071}


def test_negative_suppresses_when_closer_than_positive():
    q = qp("a", [e(0)], neg=[e(1)], threshold=0.1)
    m = PatternMatrix([q], D, "cpu")
    closer_to_neg = unit([0.6, 0.8, 0, 0, 0, 0, 0, 0])
    closer_to_pos = unit([0.8, 0.6, 0, 0, 0, 0, 0, 0])
    assert m.match(closer_to_neg, ["s"]) == []
    (hit,) = m.match(closer_to_pos, ["s"])
    assert hit.negative_score == pytest.approx(0.6, abs=1e-5)
    # A margin suppresses items that are nearly as close to a negative.
    m2 = PatternMatrix([qp("a", [e(0)], neg=[e(1)], threshold=0.1, margin=0.3)], D, "cpu")
    assert m2.match(closer_to_pos, ["s"]) == []


def test_negatives_of_one_query_do_not_affect_another():
    m = PatternMatrix([qp("a", [e(0)], neg=[e(0)]), qp("b", [e(0)])], D, "cpu")
    assert [x.query_id for x in m.match(unit(e(0)), ["s"])] == ["b"]


def test_source_globs():
    m = PatternMatrix(
        [qp("cams", [e(0)], sources=["cam-*"]), qp("gate", [e(0)], sources=["cam-gate", "door?"]),
         qp("all", [e(0)])], D, "cpu")
    items = unit(e(0), e(0), e(0), e(0))
    got = [(x.row, x.query_id) for x in m.match(items, ["cam-gate", "cam-lobby", "door1", "api"])]
    assert got == [(0, "cams"), (0, "gate"), (0, "all"), (1, "cams"), (1, "all"),
                   (2, "gate"), (2, "all"), (3, "all")]
    # Cached rows give the same answer in another batch with a new source first.
    got2 = [(x.row, x.query_id) for x in m.match(unit(e(0), e(0)), ["zzz", "cam-x"])]
    assert got2 == [(0, "all"), (1, "cams"), (1, "all")]


def test_empty_matrix_and_shape_errors():
    assert PatternMatrix([], D, "cpu").match(unit(e(0)), ["s"]) == []
    m = PatternMatrix([qp("a", [e(0)])], D, "cpu")
    with pytest.raises(ValueError, match="expected vectors"):
        m.match(torch.ones(1, D + 1), ["s"])
    from streams.core.errors import QueryValidationError
    with pytest.raises(QueryValidationError, match="expected"):
        PatternMatrix([QueryPatterns("x", torch.ones(1, 3), torch.zeros(0, 3), 0.5)], D, "cpu")


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 12), st.integers(1, 4), st.integers(0, 3),
    st.floats(-0.5, 0.9), st.integers(0, 2**31 - 1),
)
def test_matches_reference_loop(n_items, n_queries, max_pos, max_neg, threshold, seed):
    """The batched path equals the obvious per-(item, query) loop."""
    g = torch.Generator().manual_seed(seed)
    patterns = []
    for q in range(n_queries):
        p = int(torch.randint(1, max_pos + 1, (1,), generator=g))
        n = int(torch.randint(0, max_neg + 1, (1,), generator=g))
        pos = torch.nn.functional.normalize(torch.randn(p, D, generator=g), dim=1)
        neg = torch.nn.functional.normalize(torch.randn(n, D, generator=g), dim=1)
        srcs = ("*",) if q % 3 else ("s1", "x*")
        patterns.append(QueryPatterns(f"q{q}", pos, neg, threshold, 0.05 * (q % 2), srcs))
    items = torch.nn.functional.normalize(torch.randn(n_items, D, generator=g), dim=1)
    sources = [["s1", "s2", "xy"][i % 3] for i in range(n_items)]
    matrix = PatternMatrix(patterns, D, "cpu")
    got = {(x.row, x.query_id): x.score for x in matrix.match(items, sources)}
    want = {}
    for i in range(n_items):
        for p in patterns:
            best = float((p.positives @ items[i]).max())
            neg = float((p.negatives @ items[i]).max()) if p.negatives.shape[0] else None
            ok = best >= p.threshold and (neg is None or neg < best - p.negative_margin)
            ok = ok and any(fnmatch.fnmatchcase(sources[i], s) for s in p.sources)
            if ok:
                want[(i, p.query_id)] = best
    # Pairs may differ only where a comparison sits on its edge (float rounding).
    differing = set(got) ^ set(want)
    assert differing <= _near_edges(patterns, items, differing, threshold)
    for k in set(got) & set(want):
        assert got[k] == pytest.approx(want[k], abs=1e-5)


def _near_edges(patterns, items, keys, threshold):
    near = set()
    by_id = {p.query_id: p for p in patterns}
    for row, qid in keys:
        p = by_id[qid]
        best = float((p.positives @ items[row]).max())
        if abs(best - threshold) < 1e-5:
            near.add((row, qid))
        if p.negatives.shape[0]:
            neg = float((p.negatives @ items[row]).max())
            if abs(neg - (best - p.negative_margin)) < 1e-5:
                near.add((row, qid))
    return near


def test_hysteresis_slack_lowers_each_querys_threshold_only_for_selection() -> None:
    q = QueryPatterns("q", torch.tensor([[1.0, 0.0]]), torch.zeros(0, 2), threshold=0.8,
                      hysteresis=0.02)
    m = PatternMatrix([q], 2, torch.device("cpu"))
    v = torch.nn.functional.normalize(torch.tensor([[0.79, 0.61]]), dim=1)  # cosine 0.79
    best, neg = m.scores(v)
    assert m.select(best, neg, ["s"]) == []
    assert len(m.select(best, neg, ["s"], with_hysteresis=True)) == 1


def test_centered_queries_score_against_their_sources_mean_and_wait_for_it() -> None:
    """Noise that shares one direction with the example scores high raw, low centered."""
    common, event = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    example = torch.nn.functional.normalize(common + 0.6 * event, dim=0).reshape(1, -1)
    noise = torch.nn.functional.normalize(
        common + 0.2 * torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), dim=1)
    raw = PatternMatrix([QueryPatterns("raw", example, torch.zeros(0, 3), 0.5)], 3,
                        torch.device("cpu"))
    cen = PatternMatrix([QueryPatterns("cen", example, torch.zeros(0, 3), 0.5, centered=True)],
                        3, torch.device("cpu"))
    assert raw.scores(noise)[0].min() > 0.8
    assert torch.isinf(cen.scores(noise, ["mic", "mic"])[0]).all()  # no mean yet: no match
    cen.set_centers({"mic": noise.mean(dim=0)})
    assert cen.scores(noise, ["mic", "mic"])[0].abs().max() < 0.1
    hit = torch.nn.functional.normalize(common + 0.6 * event, dim=0).reshape(1, -1)
    assert cen.scores(hit, ["mic"])[0].item() > 0.9
    assert torch.isinf(cen.scores(hit, ["other-mic"])[0]).all()  # its own mean is unknown


def test_each_source_is_centered_on_its_own_ambience() -> None:
    """The same sound over two different ambiences: centered on the modality's mixed mean
    it scores low where the ambience is loud; on each source's own mean it scores alike."""
    quiet, loud, sound = (torch.eye(4)[i] for i in range(3))
    example = torch.nn.functional.normalize(0.3 * quiet + sound, dim=0).reshape(1, -1)
    m = PatternMatrix([QueryPatterns("q", example, torch.zeros(0, 4), 0.5, centered=True)], 4,
                      torch.device("cpu"))
    at_lobby = torch.nn.functional.normalize(quiet + 0.8 * sound, dim=0)
    at_dock = torch.nn.functional.normalize(2.0 * loud + 0.8 * sound, dim=0)
    items = torch.stack([at_lobby, at_dock])
    m.set_centers({"lobby": quiet, "dock": torch.nn.functional.normalize(2.0 * loud, dim=0)})
    own = m.scores(items, ["lobby", "dock"])[0][:, 0]
    m.set_centers({"lobby": (quiet + loud) / 2, "dock": (quiet + loud) / 2})
    shared = m.scores(items, ["lobby", "dock"])[0][:, 0]
    assert own.min() > 0.75 and abs(own[0] - own[1]) < 0.2
    assert shared[1] < own[1] - 0.4
