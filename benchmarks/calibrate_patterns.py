"""DIAGNOSTIC ONLY, IT READS THE GROUND TRUTH: how each pattern's scores sit inside vs
outside its known events, and what fixed thresholds would score. Lookout does not use it to
choose thresholds (`threshold: auto` needs no truth); do not copy a threshold it suggests
into a scenario and then report that scenario's result. For auto thresholds measured
without truth see benchmarks/auto_threshold_eval.py.

Embeds every record the demo replays (same readers, same replay settings, same encoders
as the worker) offline, scores them against the scenario's standing queries with the
worker's own matching code (`PatternMatrix`: positives, negatives, margin, source globs),
and reports per pattern the score distribution inside vs outside its events. Then it
replays the worker's alert policy (`AlertPolicy`: incidents) over a
grid of thresholds and scores the alerts against truth.json with `streams.demo.scorecard`, so
each suggested threshold comes with the precision and recall it would give.

    .venv/bin/python -m benchmarks.calibrate_patterns [SCENARIO_DIR] [--seed 7]
        [--size default] [--json]

Embeddings are cached next to the scenario (calibration/), so a rerun only re-scores.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoders.modality import Modality
from streams.alerting.policy import AlertPolicy, Candidate
from streams.config.settings import Settings
from streams.demo.replay import scenario_items
from streams.demo.scorecard import ObservedAlert, TruthEvent, quantile, score_alerts
from streams.queries.matching import PatternMatrix, QueryPatterns
from streams.queries.model import PolicyRule, StandingQuery, load_queries_file
from streams.queries.registry import (
    compute_pattern_vectors,
    starting_threshold,
    vectors_from_b64,
)

GRID = [round(x, 3) for x in np.arange(0.20, 0.991, 0.005)]


@dataclass
class Embedded:
    """The replayed records of one modality and their vectors."""

    sources: list[str]
    t_s: np.ndarray
    vectors: torch.Tensor


def embed_scenario(root: Path, truth: dict[str, Any], modality: Modality, encoder: Any,
                   batch: int = 32) -> Embedded:
    """Vectors of every replayed record of `modality`, cached per encoder model id."""
    cache = root / "calibration" / f"{modality.value}-{encoder.short_id}.npz"
    files = sorted(root / s["file"] for s in truth["sources"] if s["modality"] == modality)
    stamp = json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        if "stamp" in data.files and str(data["stamp"]) == stamp:  # same media: still valid
            return Embedded(list(data["sources"]), data["t_s"],
                            torch.from_numpy(data["vectors"]))
    sources: list[str] = []
    times: list[float] = []
    rows: list[torch.Tensor] = []
    pending: list[Any] = []

    def flush() -> None:
        if pending:
            rows.append(encoder.encode_payloads([p.payload for p in pending],
                                                [p.content_type for p in pending]).cpu())
            pending.clear()

    for item in scenario_items(root, truth, modalities={modality.value}):
        sources.append(item.source)
        times.append(item.t_s)
        pending.append(item)
        if len(pending) >= batch:
            flush()
    flush()
    vectors = torch.cat(rows).float()
    cache.parent.mkdir(exist_ok=True)
    np.savez(cache, sources=np.array(sources), t_s=np.array(times), vectors=vectors.numpy(),
             stamp=np.array(stamp))
    return Embedded(sources, np.array(times), vectors)


async def _direct(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def pattern_vectors(query: StandingQuery, encoder: Any) -> QueryPatterns:
    """The registry's own computation of a query's positive and negative vectors."""
    rq = asyncio.run(compute_pattern_vectors(query, encoder, _direct, None))
    return QueryPatterns(query.id, vectors_from_b64(rq.positive_vectors_b64, rq.dim),
                         vectors_from_b64(rq.negative_vectors_b64, rq.dim),
                         starting_threshold(query, encoder),
                         query.negative_margin, tuple(query.sources))


def simulate(query: StandingQuery, patterns: QueryPatterns, emb: Embedded,
             events: list[TruthEvent], threshold: float) -> dict[str, Any]:
    """Alerts the worker would raise at `threshold`, scored against the truth."""
    qp = QueryPatterns(patterns.query_id, patterns.positives, patterns.negatives, threshold,
                       patterns.negative_margin, patterns.sources)
    matrix = PatternMatrix([qp], emb.vectors.shape[1], torch.device("cpu"))
    matches = matrix.match(emb.vectors, emb.sources)
    candidates = [Candidate(query.id, emb.sources[m.row], round(emb.t_s[m.row] * 1000),
                            f"{emb.sources[m.row]}:{m.row}", m.score) for m in matches]
    policy = AlertPolicy({query.id: PolicyRule.of(query)}, lambda _: threshold)
    decisions, _ = policy.evaluate(candidates, {})
    alerts = [ObservedAlert(d.candidate.query_id, d.candidate.source, d.candidate.ts_ms / 1000)
              for d in decisions if d.action.kind == "open"]
    card = score_alerts(events, alerts, pattern_ids=[query.id])
    p = card.patterns[query.id]
    return {"threshold": threshold, "alerts": p.alerts, "correct": p.correct_alerts,
            "events": p.events, "caught": p.caught, "recall": p.recall,
            "precision": p.precision}


def _f1(r: dict[str, Any]) -> float:
    rec, prec = r["recall"] or 0.0, r["precision"] or 0.0
    return 2 * rec * prec / (rec + prec) if rec + prec else 0.0


def choose(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The centre of the widest run of thresholds with the best F1 (robust to drift)."""
    best = max(_f1(r) for r in results)
    runs: list[list[dict[str, Any]]] = []
    previous_good = False
    for r in results:
        good = _f1(r) >= best - 1e-9
        if good and previous_good:
            runs[-1].append(r)
        elif good:
            runs.append([r])
        previous_good = good
    widest = max(runs, key=len)
    pick = widest[len(widest) // 2]
    return {**pick, "f1": best, "range": [widest[0]["threshold"], widest[-1]["threshold"]]}


def distributions(query: StandingQuery, patterns: QueryPatterns, emb: Embedded,
                  events: list[TruthEvent]) -> dict[str, Any]:
    """Best positive score of records inside vs outside the pattern's events (its sources),
    and how many inside records the negatives suppress."""
    matrix = PatternMatrix([patterns], emb.vectors.shape[1], torch.device("cpu"))
    best, negative = matrix.scores(emb.vectors)
    best = best[:, 0].numpy()
    neg = negative[:, 0].numpy() if negative is not None else np.full(len(best), -np.inf)
    watched = np.array([any(fnmatch.fnmatchcase(s, g) for g in query.sources)
                        for s in emb.sources])
    inside = np.zeros(len(best), bool)
    for ev in events:
        if ev.pattern_id == query.id:
            inside |= np.array([s == ev.source for s in emb.sources]) & \
                (emb.t_s >= ev.start_s) & (emb.t_s <= ev.end_s)
    suppressed = neg >= best - patterns.negative_margin
    inn, out = best[inside & watched], best[~inside & watched]
    out_live = best[~inside & watched & ~suppressed]

    def q(values: np.ndarray, p: float) -> float | None:
        v = quantile(list(map(float, values)), p)
        return round(v, 3) if v is not None else None

    return {"inside_n": int(len(inn)), "inside_min": q(inn, 0.0), "inside_p10": q(inn, 0.1),
            "inside_p50": q(inn, 0.5),
            "inside_suppressed": int((inside & watched & suppressed).sum()),
            "outside_n": int(len(out)), "outside_p50": q(out, 0.5), "outside_p99": q(out, 0.99),
            "outside_max": q(out, 1.0), "outside_unsuppressed_max": q(out_live, 1.0)}


def calibrate(root: Path, settings: Settings) -> dict[str, Any]:
    from encoders.registry import build_encoder

    truth = json.loads((root / "truth.json").read_text())
    events = [TruthEvent(e["pattern_id"], e["source"], e["start_s"], e["end_s"], e["label"])
              for e in truth["events"]]
    queries = load_queries_file(root / "patterns.yaml")
    report: dict[str, Any] = {"scenario": str(root), "patterns": {}}
    for modality in (Modality.VIDEO, Modality.AUDIO, Modality.LOGS):
        mine = [q for q in queries if q.modality == modality]
        if not mine:
            continue
        encoder = build_encoder(settings.encoder_spec(modality), modality.value, device="cpu")
        began = time.perf_counter()
        emb = embed_scenario(root, truth, modality, encoder)
        report.setdefault("embedding_s", {})[modality.value] = round(
            time.perf_counter() - began, 1)
        for query in mine:
            patterns = pattern_vectors(query, encoder)
            results = [simulate(query, patterns, emb, events, t) for t in GRID]
            current = simulate(query, patterns, emb, events, patterns.threshold)
            report["patterns"][query.id] = {
                "encoder": encoder.short_id, **distributions(query, patterns, emb, events),
                "current": current, "suggested": choose(results)}
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"scenario {report['scenario']}  (embedding seconds: {report.get('embedding_s')})")
    head = (f"{'pattern':<22} {'in p10':>6} {'in p50':>6} {'supp':>4} {'out p99':>7} "
            f"{'out max':>7} {'live max':>8} | {'cur thr':>7} {'R':>5} {'P':>5} | "
            f"{'new thr':>7} {'range':>13} {'R':>5} {'P':>5}")
    print(head)
    print("-" * len(head))

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for pid, r in report["patterns"].items():
        c, s = r["current"], r["suggested"]
        print(f"{pid:<22} {f(r['inside_p10']):>6} {f(r['inside_p50']):>6} "
              f"{r['inside_suppressed']:>4} {f(r['outside_p99']):>7} {f(r['outside_max']):>7} "
              f"{f(r['outside_unsuppressed_max']):>8} | {c['threshold']:>7.3f} "
              f"{f(c['recall']):>5} {f(c['precision']):>5} | {s['threshold']:>7.3f} "
              f"{s['range'][0]:.3f}-{s['range'][1]:.3f} {f(s['recall']):>5} "
              f"{f(s['precision']):>5}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", type=Path, default=None,
                        help="scenario directory (default: build one under LOOKOUT_HOME/demo)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", default="default")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    root = args.scenario or settings.home / "demo" / f"{args.seed}-{args.size}"
    if not (root / "truth.json").exists():
        from streams.demo.scenario import build_scenario

        print(f"building scenario in {root}", file=sys.stderr)
        build_scenario(root, seed=args.seed, size=args.size)
    report = calibrate(root, settings)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
