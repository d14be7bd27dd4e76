"""Preview and explain of a centered query (aisfx example queries) score retained items as
the live matching does: centered on each item's own source mean, which the preview asks
for (`means(space, sources)`, in a worker `ThresholdKeeper.source_means` over Redis).

The store here is an in-memory stand-in for the Redis index (cosine KNN and range over a
list); the real one, with the means read from Redis, is
tests/integration/test_auto_thresholds.py."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from streams.alerting.preview import best_matches, preview_query
from streams.index.store import Hit, StoredItem
from streams.queries.registry import build_matrix, starting_threshold
from tests.centered_stub import HUM, ROOM, SIREN, CenteredEncoder, chunks, siren_query, unit

ENCODER = CenteredEncoder()
DOCK = chunks(2.0 * HUM, 40, seed=1)
LOBBY = chunks(ROOM, 40, seed=2)
SIREN_AT_DOCK = unit(2.0 * HUM + SIREN)
MEANS = {"mic-dock": DOCK.mean(dim=0), "mic-lobby": LOBBY.mean(dim=0)}


class MemoryStore:
    """The part of `IndexStore` the preview reads: cosine range and KNN, then vectors."""

    def __init__(self, items: Sequence[tuple[str, int, torch.Tensor]]) -> None:
        self.items = {f"item:{i}": StoredItem(f"item:{i}", source, ts, "m",
                                              v.numpy().astype(np.float32), None, None, {})
                      for i, (source, ts, v) in enumerate(items)}

    def _ranked(self, vector: torch.Tensor, sources: Sequence[str] | None) -> list[Hit]:
        hits = [Hit(s.key, float(np.dot(s.vector, vector.numpy())), s.source, s.ts_ms, "m")
                for s in self.items.values()
                if not sources or any(fnmatch.fnmatchcase(s.source, g) for g in sources)]
        return sorted(hits, key=lambda h: -h.score)

    async def knn(self, vector: torch.Tensor, k: int, *, sources: Any = None,
                  ts_range: Any = None) -> list[Hit]:
        return self._ranked(vector, sources)[:k]

    async def range(self, vector: torch.Tensor, min_score: float, *, sources: Any = None,
                    ts_range: Any = None, limit: int = 100) -> list[Hit]:
        return [h for h in self._ranked(vector, sources) if h.score >= min_score][:limit]

    async def get_many(self, keys: Sequence[str]) -> list[StoredItem]:
        return [self.items[k] for k in keys if k in self.items]


def _store() -> MemoryStore:
    items = [("mic-dock", 1000 + i, v) for i, v in enumerate(DOCK)]
    items += [("mic-lobby", 2000 + i, v) for i, v in enumerate(LOBBY)]
    items.append(("mic-dock", 5000, SIREN_AT_DOCK))
    return MemoryStore(items)


class Means:
    """Source means as Redis would hand them out; remembers what was asked."""

    def __init__(self, means: Mapping[str, torch.Tensor]) -> None:
        self.means, self.asked = dict(means), []

    async def __call__(self, space: str, sources: Sequence[str]) -> dict[str, torch.Tensor]:
        self.asked.append((space, list(sources)))
        return {s: self.means[s] for s in sources if s in self.means}


def _live_scores(vectors: torch.Tensor, sources: list[str]) -> list[float]:
    """What the worker's matrix scores (the registry's build, centered on the same means)."""
    matrix, skipped = build_matrix([siren_query(ENCODER)], ENCODER)
    assert skipped == [] and matrix.has_centered
    matrix.set_centers(MEANS, version=1)
    return matrix.scores(vectors, sources)[0][:, 0].tolist()


def _preview(means: Means) -> dict[str, Any]:
    rq = siren_query(ENCODER)
    return asyncio.run(preview_query(rq, ENCODER, _store(), means=means,
                                     threshold=starting_threshold(rq.query, ENCODER)))


def test_a_centered_preview_finds_the_event_with_its_live_score() -> None:
    means = Means(MEANS)
    result = _preview(means)
    assert means.asked == [("audio:aisfx-test-pabc", ["mic-dock", "mic-lobby"])]
    assert [m["key"] for m in result["would_fire"]] == ["item:80"]  # the siren, at the dock
    assert [m["key"] for m in result["matches"]] == ["item:80"]  # no plain hum or room noise
    live = _live_scores(SIREN_AT_DOCK.reshape(1, -1), ["mic-dock"])[0]
    assert result["matches"][0]["score"] == round(live, 6)
    assert result["alert_count"] == 1 and result["truncated"] is False


def test_raw_cosine_would_fire_on_plain_room_noise_which_is_why_it_is_centered() -> None:
    """The premise: the lobby's ambience is close to the example (recorded there) in raw
    cosine, above the threshold; centered on each source's own mean, no ambience is."""
    threshold = starting_threshold(siren_query(ENCODER).query, ENCODER)
    assert float(unit(ROOM + SIREN) @ LOBBY[0]) > threshold
    centered = _live_scores(torch.cat([DOCK, LOBBY]), ["mic-dock"] * 40 + ["mic-lobby"] * 40)
    assert max(centered) < threshold


def test_a_source_without_a_mean_yet_scores_nothing_in_a_preview_as_live() -> None:
    result = _preview(Means({"mic-lobby": MEANS["mic-lobby"]}))  # the dock's not known yet
    assert result["matches"] == [] and result["alert_count"] == 0


def test_explain_ranks_a_centered_query_by_its_centered_score() -> None:
    rq = siren_query(ENCODER)
    best = asyncio.run(best_matches(rq, ENCODER, _store(), means=Means(MEANS), k=3))
    assert best[0]["key"] == "item:80"
    assert best[0]["score"] == round(_live_scores(SIREN_AT_DOCK.reshape(1, -1),
                                                  ["mic-dock"])[0], 6)
    assert [b["score"] for b in best] == sorted((b["score"] for b in best), reverse=True)
    assert best[1]["score"] < 0.5  # the rest: ordinary ambience, centered
