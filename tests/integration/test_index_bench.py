"""`lookout bench index` against real Redis servers it starts itself: recall is measured
against exact search, sharded queries fan out and merge, a variant Redis refuses reports
Redis's own error, and no server outlives the bench."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.bench.index_tier import run_index_bench

pytestmark = pytest.mark.integration


def _servers_started_here() -> list[int]:
    """redis-server processes that are children of this test process (the bench's own,
    and those of a session-wide stack another test started)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
        except (OSError, ValueError):
            continue
        name, _, rest = stat.partition(") ")
        if name.endswith("(redis-server") and int(rest.split()[1]) == os.getpid():
            pids.append(int(proc.name))
    return pids


def test_a_small_run_measures_recall_fans_out_and_leaves_no_server_behind() -> None:
    # other tests' stacks may be children of this process too: only new ones count
    before = set(_servers_started_here())
    report = run_index_bench(1500, ["flat", "hnsw-2-shards", "svs-vamana"], queries=20,
                             batch=100)
    rows = {r["variant"]: r for r in report["results"]}

    flat, shards = rows["flat"], rows["hnsw-2-shards"]
    assert flat["quality"] == [flat["best"]] and flat["best"]["recall_at_10"] == 1.0
    assert flat["overall"]["items"] == 1500 and flat["overall"]["vectors_per_s"] > 0
    assert flat["memory"]["vector_index_mb"] > 0
    # items are spread over both servers; the merged answer is still the exact top 10
    assert shards["shards"] == 2 and shards["best"]["recall_at_10"] >= 0.95
    assert [q["ef_runtime"] for q in shards["quality"]] == [10, 20, 50, 100, 200]
    assert "Unknown argument" in rows["svs-vamana"]["error"]
    assert report["search_module"]["modules"]["search"] >= 20800
    assert set(_servers_started_here()) - before == set()
