"""Pattern vectors computed once at registration, stored compactly, rebuilt into matrices."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from encoders.modality import Modality
from encoders.registry import build_encoder
from streams.core.errors import QueryTooLarge, QueryValidationError
from streams.queries.model import parse_query
from streams.queries.registry import (
    QueryRegistry,
    build_matrix,
    compute_pattern_vectors,
    vectors_from_b64,
    vectors_to_b64,
)
from tests.registry_stub import TP, TopiclessRegistry


async def _direct(fn, *args):
    return fn(*args)


def _compute(query, encoder, lookup=None):
    return asyncio.run(compute_pattern_vectors(query, encoder, _direct, lookup))


@pytest.fixture(scope="module")
def logs_encoder():
    return build_encoder("trivial", "logs", device="cpu")


@pytest.fixture(scope="module")
def audio_encoder():
    return build_encoder("trivial", "audio", device="cpu")


@given(st.integers(0, 5), st.integers(1, 16))
def test_vectors_roundtrip(rows, dim):
    t = torch.randn(rows, dim)
    assert torch.equal(vectors_from_b64(vectors_to_b64(t), dim), t)


def test_text_positives_and_negatives_are_embedded_once(logs_encoder):
    q = parse_query({"name": "disk", "modality": "logs", "positives": ["disk full", "no space"],
                     "negatives": ["disk ok"], "threshold": 0.6})
    rq = _compute(q, logs_encoder)
    pos = vectors_from_b64(rq.positive_vectors_b64, rq.dim)
    assert pos.shape == (2, logs_encoder.dim) and rq.model_id == logs_encoder.model_id
    assert torch.allclose(pos[0], logs_encoder.encode_text(["disk full"])[0], atol=1e-6)
    assert vectors_from_b64(rq.negative_vectors_b64, rq.dim).shape == (1, logs_encoder.dim)
    assert rq.fingerprint == q.fingerprint()
    matrix, skipped = build_matrix([rq], logs_encoder)
    assert len(matrix) == 1 and skipped == []
    (hit,) = matrix.match(logs_encoder.encode_text(["disk full"]), ["any"])
    assert hit.query_id == "disk" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_disabled_and_other_model_queries_are_left_out(logs_encoder):
    q = parse_query({"name": "a", "modality": "logs", "positives": ["x"]})
    rq = _compute(q, logs_encoder)
    off = rq.model_copy(update={"query": q.model_copy(update={"enabled": False})})
    other = rq.model_copy(update={"model_id": "some-other-model"})
    matrix, skipped = build_matrix([off, other], logs_encoder)
    assert len(matrix) == 0 and skipped == ["a"]


def test_a_query_of_another_model_is_described_as_stale(logs_encoder):
    registry = QueryRegistry(bootstrap="unused:9092", topic="t.queries",
                             encoders={Modality.LOGS: logs_encoder}, run_encoder=_direct)
    rq = _compute(parse_query({"name": "a", "modality": "logs", "positives": ["x"]}),
                  logs_encoder)
    assert registry.describe(rq)["stale"] is False
    other = rq.model_copy(update={"model_id": "some-other-model"})
    assert registry.describe(other)["stale"] is True
    assert registry.describe(other)["model_id"] == "some-other-model"


def test_a_stale_query_says_why_it_is_skipped_and_how_to_fix_it(logs_encoder):
    registry = QueryRegistry(bootstrap="unused:9092", topic="t.queries",
                             encoders={Modality.LOGS: logs_encoder}, run_encoder=_direct)
    rq = _compute(parse_query({"name": "a", "modality": "logs", "positives": ["x"]}),
                  logs_encoder)
    assert registry.describe(rq)["stale_reason"] is None
    reason = registry.describe(rq.model_copy(update={"model_id": "old@1-p0"}))["stale_reason"]
    assert "old@1-p0" in reason and logs_encoder.model_id in reason  # both models
    assert "no alerts" in reason and "lookout query apply" in reason  # effect and fix


def test_the_worker_warns_once_per_stale_query_not_at_every_rebuild(logs_encoder, caplog):
    """Every change to a modality's queries rebuilds its matrix; the warnings about stale
    queries must not repeat with each one."""
    registry = TopiclessRegistry(bootstrap="unused:9092", topic="t.queries",
                                 encoders={Modality.LOGS: logs_encoder}, run_encoder=_direct)

    def add(name: str, model_id: str) -> None:
        rq = _compute(parse_query({"name": name, "modality": "logs", "positives": [name]}),
                      logs_encoder).model_copy(update={"model_id": model_id})
        registry._apply(name.encode(), rq.model_dump_json().encode(), TP, 0)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    add("old-one", "old@1-p0")
    add("old-two", "old@1-p0")
    add("live", logs_encoder.model_id)
    with caplog.at_level("WARNING", logger="streams.queries.registry"):
        for _ in range(3):
            asyncio.run(registry._rebuild({Modality.LOGS}))
        reasons = {n: registry.describe(registry.get(n))["stale_reason"] for n in
                   ("old-one", "old-two")}
        assert sorted(warnings()) == sorted(f"standing query {name!r} is stale: {reason}"
                                            for name, reason in reasons.items())
        add("old-three", "old@1-p0")
        asyncio.run(registry._rebuild({Modality.LOGS}))
        assert len(warnings()) == 3 and "'old-three'" in warnings()[-1]
    assert registry.matrix(Modality.LOGS).query_ids == ["live"]


def test_text_pattern_on_encoder_without_text_space_names_a_model(audio_encoder):
    assert not audio_encoder.has_text_space
    q = parse_query({"name": "glass", "modality": "audio", "positives": ["glass breaking"]})
    with pytest.raises(QueryValidationError, match="text space"):
        _compute(q, audio_encoder)


def test_unreadable_example_is_a_validation_error(logs_encoder):
    q = parse_query({"name": "a", "modality": "video", "positives": [
        {"payload_b64": base64.b64encode(b"not an image").decode(),
         "content_type": "image/jpeg"}]})
    video = build_encoder("trivial", "video", device="cpu")
    with pytest.raises(QueryValidationError, match="unreadable positive example"):
        _compute(q, video)


def test_item_key_examples_use_the_stored_vector(logs_encoder):
    stored = logs_encoder.encode_text(["kernel panic"])[0].numpy()

    async def lookup(modality, key):
        if key == "lookout:item:logs:t:0:1":
            return SimpleNamespace(vector=stored, model=logs_encoder.short_id)
        return None

    q = parse_query({"name": "p", "modality": "logs",
                     "positives": [{"item_key": "lookout:item:logs:t:0:1"}]})
    rq = _compute(q, logs_encoder, lookup)
    assert torch.allclose(vectors_from_b64(rq.positive_vectors_b64, rq.dim)[0],
                          torch.from_numpy(stored), atol=1e-6)
    q2 = parse_query({"name": "p", "modality": "logs", "positives": [{"item_key": "gone"}]})
    with pytest.raises(QueryValidationError, match="not in the index"):
        _compute(q2, logs_encoder, lookup)


def test_a_query_too_large_for_one_kafka_record_is_refused_before_sending(logs_encoder):
    """64 positives of 20,000 characters each are valid examples, but the registered record
    (about 1.3 MB) is more than the queries topic takes: a clear QueryTooLarge, nothing sent."""
    registry = QueryRegistry(bootstrap="unused:9092", topic="t.queries",
                             encoders={Modality.LOGS: logs_encoder}, run_encoder=_direct)
    query = parse_query({"name": "big", "modality": "logs",
                         "positives": [f"{i} " + "x" * 20_000 for i in range(64)]})
    with pytest.raises(QueryTooLarge, match="queries topic takes at most 1,000,000"):
        asyncio.run(registry.register(query))


def test_the_example_bounds_are_part_of_the_query_model():
    with pytest.raises(QueryValidationError, match="positives: List should have at most 64"):
        parse_query({"name": "a", "modality": "logs", "positives": ["x"] * 65})
