"""The demo's scorecard: what the run processed, what it caught against truth.json, how fast.

Everything here is computed from what the run observed: alerts read back from the alerts
topic, the send time the demo noted for each record, and the worker's own counters. An
alert counts for this run only when it points at a record this run sent (same source and
event time); anything else on the topic (another run, another producer) is reported apart.

Composite patterns (truth.json `composites`) are scored apart from the single-modality ones,
by the same rule with the SITE in place of the source: a composite alert (modality
"composite") is correct when it names the incident's composite, its `site` is the
incident's and its event time falls inside the incident (widened by the tolerance); it
belongs to this run when every member record in `evidence.members` was sent by this run.
Incidents marked `ambiguous` (members about `within_s` apart) count neither way, nor do
alerts on them. The top-level recall/precision stay the single-modality figures; the
`composites` block has its own, and the acceptance needs both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.demo.replay import SendLog
from streams.demo.scorecard import ObservedAlert, TruthEvent, matching_event, score_alerts

RECALL_TARGET = 0.9
PRECISION_TARGET = 0.9


@dataclass
class RunObservations:
    """What the demo saw while it ran; the scorecard is a pure function of it."""

    truth: dict[str, Any]
    scenario_dir: Path
    base_ms: int
    speed: float
    registered: list[str]
    unavailable: dict[str, str]  # pattern id -> why the worker could not take it
    alerts: list[dict[str, Any]]
    sends: SendLog
    processed: dict[str, int]
    deadletters: int
    api_url: str
    kept: bool
    wall_s: float
    drained: bool
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)  # query id -> in force


def truth_events(truth: dict[str, Any]) -> list[TruthEvent]:
    return [TruthEvent(e["pattern_id"], e["source"], float(e["start_s"]), float(e["end_s"]),
                       e.get("label", "")) for e in truth["events"]]


def composite_ids(truth: dict[str, Any]) -> set[str]:
    return {c["id"] for c in truth.get("composites", [])}


def composite_truth(truth: dict[str, Any], ambiguous: bool = False) -> list[TruthEvent]:
    """The composite incidents as truth events whose `source` is the incident's site."""
    return [TruthEvent(c["pattern_id"], c["site"], float(c["start_s"]), float(c["end_s"]),
                       c.get("id", "")) for c in truth.get("composite_events", [])
            if bool(c.get("ambiguous")) == ambiguous]


def observed_alerts(alerts: list[dict[str, Any]], sends: SendLog, base_ms: int
                    ) -> tuple[list[ObservedAlert], int]:
    """Alerts about records this run sent (with latency), and how many were about others."""
    mine, foreign = [], 0
    for a in alerts:
        seen = _observe(a, sends, base_ms)
        if seen is None:
            foreign += 1
        else:
            mine.append(seen)
    return mine, foreign


def _observe(alert: dict[str, Any], sends: SendLog, base_ms: int) -> ObservedAlert | None:
    """The alert in scenario seconds with its latency; None when this run did not send it.
    A composite alert is placed at its site, and is this run's when all its member records
    are (latency: from the last member's send)."""
    if alert.get("modality") == "composite":
        members = (alert.get("evidence") or {}).get("members") or []
        times = [sends.sent_at(m["source"], int(m["ts"])) for m in members]
        if not members or any(t is None for t in times):
            return None
        sent = max(t for t in times if t is not None)
        place = alert.get("site") or ""
    else:
        found = sends.sent_at(alert["source"], int(alert["ts"]))
        if found is None:
            return None
        sent, place = found, alert["source"]
    return ObservedAlert(alert["query_id"], place, (int(alert["ts"]) - base_ms) / 1000,
                         (int(alert["detected_at"]) - sent) / 1000)


def _alert_log(obs: RunObservations, tolerance_s: float = 2.0) -> list[dict[str, Any]]:
    """Each alert of this run: scenario time, score, latency and the truth event it caught."""
    events = truth_events(obs.truth)
    incidents = [*composite_truth(obs.truth), *composite_truth(obs.truth, ambiguous=True)]
    out = []
    for a in obs.alerts:
        seen = _observe(a, obs.sends, obs.base_ms)
        if seen is None:
            continue
        if a.get("modality") == "composite":
            j = matching_event(incidents, seen, tolerance_s)
            event = None if j is None else incidents[j].label
        else:
            i = matching_event(events, seen, tolerance_s)
            event = None if i is None else obs.truth["events"][i].get("id")
        out.append({"query_id": seen.query_id, "source": a["source"], "t_s": seen.t_s,
                    "score": a.get("score"), "latency_s": seen.latency_s, "event": event,
                    **({"site": a.get("site")} if a.get("modality") == "composite" else {})})
    return sorted(out, key=lambda x: x["t_s"])


def _meets(scored: dict[str, Any]) -> bool:
    return ((scored["recall"] or 0.0) >= RECALL_TARGET
            and (scored["precision"] if scored["precision"] is not None else 0.0)
            >= PRECISION_TARGET)


def score_composites(truth: dict[str, Any], mine: list[ObservedAlert], registered: list[str],
                     tolerance_s: float = 2.0) -> dict[str, Any]:
    """Recall/precision of the composite patterns against truth.json's composite incidents
    (see the module doc); alerts on ambiguous incidents are set aside and counted."""
    wanted = set(registered)
    ambiguous = composite_truth(truth, ambiguous=True)
    fused = [a for a in mine if a.query_id in wanted]
    aside = [a for a in fused if matching_event(ambiguous, a, tolerance_s) is not None]
    kept = [a for a in fused if a not in aside]
    scored = score_alerts(composite_truth(truth), kept, tolerance_s=tolerance_s,
                          pattern_ids=registered).as_dict()
    events = sum(p["events"] for p in scored["patterns"].values())
    return {**scored, "events": events, "ambiguous_events": len(ambiguous),
            "alerts_on_ambiguous": len(aside),
            "distractors": len(truth.get("composite_distractors", [])),
            "met": bool(events) and _meets(scored)}


def build_scorecard(obs: RunObservations) -> dict[str, Any]:
    """The scorecard as plain data (what `--json` prints and the table shows)."""
    mine, foreign = observed_alerts(obs.alerts, obs.sends, obs.base_ms)
    composites = composite_ids(obs.truth)
    card = score_alerts(truth_events(obs.truth), mine,
                        pattern_ids=[q for q in obs.registered if q not in composites])
    scored = card.as_dict()
    patterns: dict[str, Any] = dict(scored["patterns"])
    fused = score_composites(obs.truth, mine, [q for q in obs.registered if q in composites])
    for pid, why in obs.unavailable.items():
        (fused["patterns"] if pid in composites else patterns)[pid] = {"needs": why}
    other_queries = sorted({a.query_id for a in mine} - set(obs.registered))
    singles_met = _meets(scored)
    met = singles_met and (fused["met"] or not fused["events"])
    modalities = sorted({s["modality"] for s in obs.truth["sources"]})
    t = obs.timings
    busy_s = (t["drained_s"] - t["replay_started_s"]) if {"drained_s", "replay_started_s"} <= \
        set(t) else None
    api = obs.api_url
    example = Path(obs.scenario_dir) / "examples"
    return {
        "scenario": {"dir": str(obs.scenario_dir), "seed": obs.truth.get("seed"),
                     "size": obs.truth.get("size"), "duration_s": obs.truth.get("duration_s"),
                     "speed": obs.speed, "events": len(obs.truth["events"]),
                     "ts_base_ms": obs.base_ms},
        "items": {m: {"sent": obs.sends.per_modality.get(m, 0),
                      "processed": obs.processed.get(m, 0),
                      "per_s": round(obs.processed.get(m, 0) / busy_s, 2) if busy_s else None}
                  for m in modalities},
        "drained": obs.drained,
        "alerts": {"read_from_topic": len(obs.alerts), "this_run": len(mine),
                   "about_other_records": foreign, "other_queries": other_queries},
        "precision": scored["precision"],
        "recall": scored["recall"],
        "latency_p50_s": scored["latency_p50_s"],
        "latency_p99_s": scored["latency_p99_s"],
        "patterns": patterns,
        "composites": fused,
        "thresholds": dict(obs.thresholds),
        "acceptance": {"recall_min": RECALL_TARGET, "precision_min": PRECISION_TARGET,
                       "met": met, "single_modality_met": singles_met,
                       "composites_met": fused["met"] if fused["events"] else None},
        "deadletters": obs.deadletters,
        "wall_s": round(obs.wall_s, 1),
        "notes": list(obs.notes),
        "timings_s": dict(obs.timings),
        "alert_log": _alert_log(obs),
        "next": {
            "api": api,
            "console": f"{api}/",
            "metrics": f"{api}/metrics",
            "alerts": f"{api}/alerts",
            "search": 'lookout search "disk full: no space left on device" -m logs -k 5',
            "search_example": f"lookout search -m video --example {example / 'cat.png'} -k 5",
            "add_query": ("lookout query add 'a cup of coffee' -m video "
                          f"--example {example / 'coffee.png'} --source 'cam-*'"),
            "apply_queries": f"lookout query apply {Path(obs.scenario_dir) / 'patterns.yaml'}",
            "running": obs.kept,
        },
    }
