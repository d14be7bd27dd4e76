"""The parts `lookout bench index` measures recall with: exact search, recall@k, the
clustered vectors and the choice of the cheapest EF_RUNTIME that reaches the target."""

from __future__ import annotations

import numpy as np

from streams.bench.index_tier import (
    DIMS,
    VARIANTS,
    best_ef,
    clustered_vectors,
    exact_top_k,
    recall_at_k,
)


def test_exact_search_ranks_by_cosine_best_first():
    data = np.eye(4, dtype=np.float32)
    query = np.array([[0.9, 0.1, 0.4, 0.0]], dtype=np.float32)
    assert exact_top_k(data, query, k=3).tolist() == [[0, 2, 1]]


def test_recall_is_the_share_of_the_true_top_k_found():
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall_at_k([[1, 2, 3, 4], [5, 6, 7, 8]], truth, k=4) == 1.0
    assert recall_at_k([[4, 3, 9, 9], [8, 0, 0, 0]], truth, k=4) == (0.5 + 0.25) / 2


def test_clustered_vectors_are_unit_length_and_have_near_neighbours():
    x = clustered_vectors(2000, clusters=20)
    assert x.shape == (2000, DIMS) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sims = x[:50] @ x.T
    np.fill_diagonal(sims[:, :50], -1)
    nearest, typical = sims.max(axis=1).mean(), np.median(sims)
    assert nearest > typical + 0.3  # clusters, not isotropic noise
    assert np.array_equal(x, clustered_vectors(2000, clusters=20))  # same seed, same data


def test_the_cheapest_setting_that_reaches_the_target_is_chosen():
    quality = [{"ef_runtime": 10, "recall_at_10": 0.9}, {"ef_runtime": 50, "recall_at_10": 0.96},
               {"ef_runtime": 100, "recall_at_10": 0.99}]
    assert best_ef(quality)["ef_runtime"] == 50
    assert best_ef(quality, target=0.999) is None


def test_every_variant_has_a_schema_with_its_algorithm_and_dtype():
    for v in VARIANTS.values():
        if v.kind != "search":
            continue
        vec = next(f for f in v.schema(0)["fields"] if f["type"] == "vector")["attrs"]
        assert (vec["algorithm"], vec["datatype"], vec["dims"]) == (v.algorithm, v.datatype,
                                                                    DIMS)
