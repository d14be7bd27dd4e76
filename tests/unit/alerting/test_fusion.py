"""From a batch's matches to composite member hits, and from a firing to its alert."""

from __future__ import annotations

import asyncio

import torch

from streams.alerting.composite import CompositePolicy, CompositeRule
from streams.alerting.fusion import HitSource, composite_alert, hit_floors, member_hits
from streams.queries.composite import parse_composite
from streams.queries.matching import Match, PatternMatrix, QueryPatterns
from streams.queries.sites import parse_sites
from tests.registry_stub import logs_registry

THRESHOLDS = {"oom": 0.6, "crash": 0.7}


def registry_with(composite: dict):
    reg = logs_registry("oom", "crash")
    asyncio.run(reg.put_sites(parse_sites({"sites": {"server-room": ["db-*", "mic-server"]}})))
    asyncio.run(reg.register_composite(parse_composite(
        {"kind": "composite", "name": "db down", "within_s": 10, **composite})))
    return reg


def source(item: str, src: str, ts_ms: int, modality: str = "logs") -> HitSource:
    return HitSource(item, item, src, modality, ts_ms, {"text": "x" * 5000})


def test_hits_count_from_their_own_hit_threshold_and_only_with_a_group():
    reg = registry_with({"all_of": [{"query_id": "oom", "hit_threshold": 0.4}, "crash"]})
    assert hit_floors(reg, THRESHOLDS.__getitem__, ["oom", "crash", "other"]) == {
        "oom": 0.4, "crash": 0.7}
    found = [(Match(0, 0, "oom", 0.45, None), source("a", "db-1", 1000)),      # below oom's own
             (Match(1, 1, "crash", 0.65, None), source("b", "mic-server", 2000)),  # below 0.7
             (Match(2, 0, "oom", 0.9, None), source("c", "cam-lobby", 3000))]  # no site
    hits = member_hits(reg, THRESHOLDS.__getitem__, found)
    assert [(c, g, h.query_id, h.item_key) for c, g, h in hits] == [
        ("db-down", "server-room", "oom", "a")]
    assert len(hits[0][2].evidence["text"]) == 1000  # a long log line is cut


def test_composite_alert_lists_each_members_evidence_and_the_site():
    reg = registry_with({"sequence": ["oom", "crash"], "score": "mean", "threshold": 0.5})
    found = [(Match(0, 0, "oom", 0.8, None), source("a", "db-1", 1000)),
             (Match(1, 1, "crash", 0.9, None), HitSource("b", "b", "mic-server", "audio", 4000,
                                                    {"audio_url": "/items/b/audio"}))]
    hits = member_hits(reg, THRESHOLDS.__getitem__, found)
    rc = reg.find_composite("db-down")
    firings, _ = CompositePolicy({"db-down": CompositeRule.of(rc.composite)}).evaluate(hits, {})
    (firing,) = firings
    alert = composite_alert(rc.composite, firing, "server-room")
    assert alert.modality == "composite" and alert.site == "server-room"
    assert alert.query_id == "db-down" and alert.ts == 4000 and alert.score == 0.85
    members = alert.evidence["members"]
    assert [(m["query_id"], m["ts"], m["score"]) for m in members] == [
        ("oom", 1000, 0.8), ("crash", 4000, 0.9)]
    assert members[1]["audio_url"] == "/items/b/audio" and members[0]["text"].startswith("xx")
    assert alert.incident == {"start": 4000, "end": None, "peak": 0.85}


def test_matrix_selects_at_given_floors_and_nothing_for_other_queries():
    eye = torch.eye(2)
    m = PatternMatrix([QueryPatterns("a", eye[:1], torch.zeros(0, 2), 0.99, 0.0, ("*",)),
                       QueryPatterns("b", eye[1:], torch.zeros(0, 2), 0.99, 0.0, ("*",))],
                      2, torch.device("cpu"))
    best, neg = m.scores(torch.tensor([[0.8, 0.6]]))
    assert m.select(best, neg, ["s"]) == []
    assert [x.query_id for x in m.select(best, neg, ["s"], floors={"a": 0.5})] == ["a"]


def test_preview_runs_the_live_policy_over_the_members_retained_hits():
    from streams.alerting.preview import composite_firings

    c = parse_composite({"kind": "composite", "name": "db down", "within_s": 10,
                         "sequence": ["oom", "crash"]})
    sites = parse_sites({"sites": {"server-room": ["db-*", "mic-server"], "lab": ["db-9"]}})

    def row(key, source, ts):
        return {"key": key, "source": source, "ts": ts, "score": 0.8, "evidence": {}}

    rows = {"oom": [row("a", "db-1", 1000), row("b", "db-1", 60_000), row("z", "web-1", 0)],
            "crash": [row("c", "mic-server", 4000), row("d", "mic-server", 55_000)]}
    result = composite_firings(c, rows, {"oom": "logs", "crash": "audio"}, sites)
    # the crash at 55 s came before the OOM at 60 s: not the sequence; web-1 has no site
    assert result["alert_count"] == 1 and result["hit_counts"] == {"oom": 3, "crash": 2}
    (fired,) = result["would_fire"]
    assert fired["group"] == "server-room" and fired["ts"] == 4000
    assert [m["key"] for m in fired["members"]] == ["a", "c"]
