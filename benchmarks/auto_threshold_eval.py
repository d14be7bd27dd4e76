"""Offline evaluation of `threshold: auto` and incidents on generated scenarios.

Nothing here is fitted with truth: every query of the scenario's patterns.yaml gets
`threshold: auto` (its number in the file is ignored), each query's background histogram
starts EMPTY, items arrive in event-time order, each query's threshold is re-derived from
its own background every `--refresh` items (prior before `min_background`), and the
incident policy (`streams.alerting.incidents.IncidentTracker`) decides the alerts. truth.json is
read only to score the alerts (`streams.demo.scorecard`) and to list the scenario's files.

Embeddings come from `benchmarks.calibrate_patterns.embed_scenario` (same readers, replay
settings, encoders and cache as the truth-based diagnostic), pattern vectors from the
registry's own `compute_pattern_vectors`, scores from the worker's `PatternMatrix`.

    .venv/bin/python -m benchmarks.auto_threshold_eval /tmp/scen-101 [/tmp/scen-102 ...]
        [--score auto|raw|centered] [--per-source] [--queries file|bare] [--json]
        [--fixed 0.5]         # baseline: one fixed threshold, same incident policy
        [--background-only]   # no scoring, just each query's background summary
        [--measure-priors]    # the thresholds.PRIORS measurement (backgrounds, no truth)

`--queries bare` is the new user of issue 13: each video and logs pattern becomes its
name as the only (text) positive, each audio pattern its example file alone, and no
negatives anywhere (`lookout query add NAME -m MOD -t TEXT` or `-e FILE`, nothing else).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from encoders.modality import Modality
from streams.alerting.incidents import IncidentRule, IncidentTracker
from streams.alerting.thresholds import MIN_CENTER_ITEMS
from streams.config.settings import Settings
from streams.demo.scorecard import ObservedAlert, TruthEvent, score_alerts
from streams.queries.thresholds import (
    BackgroundCentering,
    CalibrationConfig,
    ScoreHistogram,
    choose_threshold,
    needs_centering,
    prior_for,
)


@dataclasses.dataclass
class QueryScores:
    """One query's view of its modality: per item (event-time order) its score inputs."""

    query_id: str
    kind: str
    encoder: str
    sources: list[str]
    t_s: np.ndarray
    keys: list[str]
    score: np.ndarray  # best positive cosine: what the background histogram counts
    suppressed: np.ndarray  # a negative example suppresses the item: it cannot alert
    min_hits: int
    window_s: float


def _load_queries(root: Path, mode: str) -> list[Any]:
    from streams.queries.model import StandingQuery, load_queries_file

    queries = load_queries_file(root / "patterns.yaml")
    if mode == "bare":
        out = []
        for q in queries:
            data = q.model_dump(exclude_none=True)
            if q.modality == Modality.AUDIO:  # aisfx has no text space: the example alone
                data.update(positives=data["positives"][:1], negatives=[])
            else:
                data.update(positives=[{"text": q.name}], negatives=[])
            out.append(StandingQuery.model_validate(data))
        return out
    return queries


def _kind(query: Any) -> str:
    return "text" if all(p.text is not None for p in query.positives) else "example"


def query_scores(root: Path, settings: Settings, query_mode: str = "file",
                 score_mode: str = "auto", background: str = "raw") -> list[QueryScores]:
    """Scores of every watched item for every query (no threshold involved)."""
    import torch

    from benchmarks.calibrate_patterns import embed_scenario, pattern_vectors
    from encoders.registry import build_encoder
    from streams.queries.matching import PatternMatrix

    truth = json.loads((root / "truth.json").read_text())  # file list and replay hints only
    queries = _load_queries(root, query_mode)
    out: list[QueryScores] = []
    for modality in (Modality.VIDEO, Modality.AUDIO, Modality.LOGS):
        mine = [q for q in queries if q.modality == modality]
        if not mine:
            continue
        encoder = build_encoder(settings.encoder_spec(modality), modality.value, device="cpu")
        emb = embed_scenario(root, truth, modality, encoder)
        order = np.argsort(emb.t_s, kind="stable")
        vectors = emb.vectors[order].numpy().astype(np.float64)
        srcs = [emb.sources[i] for i in order]
        t_s = emb.t_s[order]
        keys = [f"{s}:{t:.3f}" for s, t in zip(srcs, t_s, strict=True)]
        for q in mine:
            pats = pattern_vectors(q, encoder)
            pos = pats.positives.numpy().astype(np.float64)
            neg = pats.negatives.numpy().astype(np.float64)
            centered = score_mode == "centered" or (score_mode == "auto" and needs_centering(
                encoder.short_id, _kind(q)) and not (background == "conditional" and len(neg)))
            if centered:
                best, bneg = _centered_scores(vectors, pos, neg,
                                              srcs if CENTER_PER_SOURCE else None)
            else:
                m = PatternMatrix([pats], vectors.shape[1], torch.device("cpu"))
                b, n = m.scores(torch.from_numpy(vectors).float())
                best = b[:, 0].double().numpy()
                bneg = n[:, 0].double().numpy() if n is not None else np.full(len(best),
                                                                               -np.inf)
            watched = np.array([any(fnmatch.fnmatchcase(s, g) for g in q.sources)
                                for s in srcs])
            sup = bneg >= best - q.negative_margin
            if background == "effective":
                # what can alarm: a suppressed item never can, so it counts at -1
                best = np.where(sup, -1.0, best)
            if background == "contrast":
                # A suppressed item enters the background lowered by how far its best
                # negative beats its positive: 2 * pos - neg - margin (<= pos).
                best = np.where(sup, 2 * best - bneg - q.negative_margin, best)
            idx = np.nonzero(watched)[0]
            out.append(QueryScores(q.id, _kind(q), encoder.short_id,
                                   [srcs[i] for i in idx], t_s[idx], [keys[i] for i in idx],
                                   best[idx], sup[idx], q.min_hits, q.window_s))
    return out


CENTER_PER_SOURCE = True


def _centered_scores(vectors: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                     sources: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine after subtracting the RUNNING mean of the item's source (or of the modality
    when `sources` is None) over the items seen so far, in event time, as a worker would
    have it: streaming, no look-ahead, and -inf (cannot alarm, not counted) until that mean
    has MIN_CENTER_ITEMS items."""
    dim = vectors.shape[1]
    cens: dict[str, BackgroundCentering] = {}
    best = np.full(len(vectors), -np.inf)
    bneg = np.full(len(vectors), -np.inf)
    for i in range(len(vectors)):
        cen = cens.setdefault(sources[i] if sources else "*", BackgroundCentering(dim))
        cen.update(vectors[i])
        if cen.n < MIN_CENTER_ITEMS:
            continue
        v = cen.center(vectors[i][None, :])[0]
        best[i] = float((cen.center(pos) @ v).max())
        if len(neg):
            bneg[i] = float((cen.center(neg) @ v).max())
    return best, bneg


def simulate(qs: QueryScores, cfg: CalibrationConfig, *, refresh: int = 10,
             per_source: bool = False, hysteresis: float = 0.02, clear_s: float = 10.0,
             fixed: float | None = None, conditional: bool = False) -> dict[str, Any]:
    """Stream one query's items in event-time order: threshold from the background so far,
    incidents per source; returns alerts and the threshold history. `conditional`: the
    background holds only items no negative suppresses (the only ones that can alarm), and
    rates count only those."""
    prior = prior_for(qs.encoder, qs.kind)
    hists: dict[str, ScoreHistogram] = {}
    trackers: dict[str, IncidentTracker] = {}
    seen_t: dict[str, list[float]] = {}
    thr_by_key: dict[str, float] = {}
    history: list[tuple[float, float, str, int]] = []
    alerts: dict[str, ObservedAlert] = {}
    n_since: dict[str, int] = {}
    all_sources = sorted(set(qs.sources))
    choice = None
    for t, src, key, s, sup in zip(qs.t_s, qs.sources, qs.keys, qs.score, qs.suppressed,
                                   strict=True):
        hk = src if per_source else "*"
        hist = hists.setdefault(hk, ScoreHistogram())
        counted = bool(np.isfinite(s)) and not (conditional and sup)  # as the worker's
        if counted:
            seen_t.setdefault(src, []).append(float(t))
        if hk not in thr_by_key or n_since.get(hk, 0) >= refresh:
            n_since[hk] = 0
            srcs = [src] if per_source else all_sources
            rate = sum(_rate_per_day(seen_t.get(x, [])) for x in srcs)
            choice = choose_threshold(
                hist, items_per_day=max(rate, 1.0),
                target_per_day=cfg.target_per_source_day * len(srcs), prior=prior,
                min_background=cfg.min_background, full_background=cfg.full_background,
                tail_fraction=cfg.tail_fraction, trim_fraction=cfg.trim_fraction,
                floor_mad_k=cfg.floor_mad_k, floor_margin=cfg.floor_margin)
            if hk not in thr_by_key or abs(choice.threshold - thr_by_key[hk]) > 1e-9:
                history.append((float(t), round(choice.threshold, 4), choice.source,
                                hist.count))
            thr_by_key[hk] = choice.threshold
        thr = thr_by_key[hk] if fixed is None else fixed
        rule = IncidentRule(thr, hysteresis, qs.min_hits, qs.window_s, clear_s)
        tr = trackers.setdefault(src, IncidentTracker(qs.query_id, rule))
        tr.rule = rule
        # a suppressed item, or one scored before its source's mean is known, never alerts
        decision_score = -1.0 if sup or not np.isfinite(s) else float(s)
        for a in tr.observe(float(t), key, decision_score):
            if a.kind == "open":
                alerts[a.alert_id] = ObservedAlert(qs.query_id, src, a.t)
            elif a.kind == "merge":
                alerts.pop(a.alert_id, None)
        if counted:
            hist.add([s])
        n_since[hk] = n_since.get(hk, 0) + 1
    final = {k: round(v, 4) for k, v in thr_by_key.items()}
    return {"alerts": list(alerts.values()), "history": history, "final_threshold": final,
            "last_choice": choice.as_dict() if choice else None}


def _rate_per_day(times: list[float]) -> float:
    """Items a day from what was seen so far (the worker's rate counter)."""
    if len(times) < 2:
        return 86_400.0
    span = max(times[-1] - times[0], 1.0)
    return (len(times) - 1) / span * 86_400.0


def background_summary(qs: QueryScores) -> dict[str, Any]:
    """Truth-free description of a query's scores over the whole scenario."""
    h = ScoreHistogram.of(qs.score)
    med, mad = h.median_mad()
    return {"n": h.count, "kind": qs.kind, "encoder": qs.encoder,
            "suppressed": int(qs.suppressed.sum()),
            "q": {str(q): round(float(h.quantile(q)), 3)
                  for q in (0.5, 0.75, 0.9, 0.95, 0.99, 1.0)},
            "median": round(med, 3), "mad": round(mad, 4)}


def measure_priors(roots: list[Path], cfg: CalibrationConfig, background: str = "raw"
                   ) -> dict[str, Any]:
    """The cold-start prior table from BACKGROUND data only (no truth): per (encoder family,
    query kind), `choose_threshold` on the histogram of all of each query's scores over the
    scenario (both query sets), and their 75th percentile. How calibration.PRIORS was made
    (on the dev scenarios 101 and 102)."""
    from streams.queries.thresholds import _family

    values: dict[str, list[float]] = {}
    pooled: dict[str, list[np.ndarray]] = {}  # too few per query: pool them per kind
    for mode in ("file", "bare"):
        for root in roots:
            for qs in query_scores(root, Settings(), mode, "auto", background):
                negatives = background == "conditional" and bool(qs.suppressed.any())
                kept = qs.score[~qs.suppressed] if negatives else qs.score
                if negatives and len(kept) < cfg.min_background:
                    key = f"{_family(qs.encoder)}/{qs.kind}/negatives"
                    pooled.setdefault(key, []).append(kept)
                    continue  # too few unsuppressed items alone: pooled below
                h = ScoreHistogram.of(kept)
                span = max(float(qs.t_s.max() - qs.t_s.min()), 1.0)
                c = choose_threshold(h, items_per_day=len(kept) / span * 86_400,
                                     target_per_day=cfg.target_per_source_day
                                     * len(set(qs.sources)),
                                     prior=0.5, min_background=cfg.min_background,
                                     full_background=0)
                key = f"{_family(qs.encoder)}/{qs.kind}" + ("/negatives" if negatives else "")
                values.setdefault(key, []).append(round(c.threshold, 3))
    for key, parts in pooled.items():
        if key in values:
            continue
        kept = np.concatenate(parts)
        if len(kept) >= cfg.min_background:
            c = choose_threshold(ScoreHistogram.of(kept), items_per_day=86_400.0,
                                 target_per_day=cfg.target_per_source_day, prior=0.5,
                                 min_background=cfg.min_background, full_background=0)
            values[key + " (pooled)"] = [round(c.threshold, 3)]
    return {k: {"prior_p75": round(float(np.quantile(v, 0.75)), 3), "values": sorted(v)}
            for k, v in values.items()}


def evaluate(root: Path, cfg: CalibrationConfig, *, query_mode: str, score_mode: str,
             background: str, per_source: bool, refresh: int, hysteresis: float,
             clear_s: float, fixed: float | None = None) -> dict[str, Any]:
    settings = Settings()
    scores = query_scores(root, settings, query_mode, score_mode, background)
    truth = json.loads((root / "truth.json").read_text())  # scoring only, from here on
    events = [TruthEvent(e["pattern_id"], e["source"], e["start_s"], e["end_s"], e["label"])
              for e in truth["events"]]
    alerts: list[ObservedAlert] = []
    detail: dict[str, Any] = {}
    for qs in scores:
        r = simulate(qs, cfg, refresh=refresh, per_source=per_source, hysteresis=hysteresis,
                     clear_s=clear_s, fixed=fixed, conditional=background == "conditional")
        alerts += r["alerts"]
        detail[qs.query_id] = {"final_threshold": r["final_threshold"],
                               "moves": len(r["history"]), "encoder": qs.encoder,
                               "kind": qs.kind}
    card = score_alerts(events, alerts, pattern_ids=[q.query_id for q in scores])
    out = card.as_dict()
    for pid, d in detail.items():
        out["patterns"][pid].update(d)
    out["scenario"] = str(root)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenarios", nargs="+", type=Path)
    ap.add_argument("--queries", choices=["file", "bare"], default="file")
    ap.add_argument("--score", choices=["auto", "raw", "centered"], default="auto",
                    help="auto: centered where calibration.CENTERED says the raw cosine of "
                         "that encoder and query kind is degenerate")
    ap.add_argument("--background", default="raw",
                    choices=["raw", "contrast", "effective", "conditional"],
                    help="conditional: queries with negatives score raw and their background "
                         "holds only the items no negative suppresses (experiment, see "
                         "docs/alerting.md)")
    ap.add_argument("--per-source", action="store_true")
    ap.add_argument("--refresh", type=int, default=10)
    ap.add_argument("--hysteresis", type=float, default=0.02)
    ap.add_argument("--clear-s", type=float, default=10.0)
    ap.add_argument("--target", type=float, default=CalibrationConfig.target_per_source_day)
    ap.add_argument("--min-background", type=int, default=CalibrationConfig.min_background)
    ap.add_argument("--tail-fraction", type=float, default=CalibrationConfig.tail_fraction,
                    help="default: adaptive (calibration.adaptive_tail_fraction)")
    ap.add_argument("--trim-fraction", type=float, default=CalibrationConfig.trim_fraction)
    ap.add_argument("--mad-k", type=float, default=CalibrationConfig.floor_mad_k)
    ap.add_argument("--full-background", type=int,
                    default=CalibrationConfig.full_background)
    ap.add_argument("--fixed", type=float, default=None,
                    help="baseline: this one threshold for every query (no auto)")
    ap.add_argument("--background-only", action="store_true")
    ap.add_argument("--measure-priors", action="store_true",
                    help="print the cold-start prior table measured on these scenarios' "
                         "backgrounds (no truth)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--center-modality", action="store_true",
                    help="centering by the modality's running mean (the rule before "
                         "per-source centering), not each source's")
    a = ap.parse_args(argv)
    global CENTER_PER_SOURCE
    CENTER_PER_SOURCE = not a.center_modality
    cfg = dataclasses.replace(CalibrationConfig(), target_per_source_day=a.target,
                              min_background=a.min_background, tail_fraction=a.tail_fraction,
                              full_background=a.full_background,
                              trim_fraction=a.trim_fraction, floor_mad_k=a.mad_k)
    if a.measure_priors:
        print(json.dumps(measure_priors(a.scenarios, cfg, a.background), indent=1))
        return 0
    results = []
    for root in a.scenarios:
        if a.background_only:
            scores = query_scores(root, Settings(), a.queries, a.score, a.background)
            results.append({"scenario": str(root),
                            "background": {q.query_id: background_summary(q) for q in scores}})
            continue
        results.append(evaluate(root, cfg, query_mode=a.queries, score_mode=a.score,
                                background=a.background, per_source=a.per_source, refresh=a.refresh,
                                hysteresis=a.hysteresis, clear_s=a.clear_s, fixed=a.fixed))
    if a.json or a.background_only:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(f"{r['scenario']}: recall {r['recall']:.3f} precision "
              f"{(r['precision'] or 0):.3f}")
        for pid, p in r["patterns"].items():
            rec = "-" if p["recall"] is None else f"{p['recall']:.2f}"
            pre = "-" if p["precision"] is None else f"{p['precision']:.2f}"
            print(f"  {pid:<22} {p['encoder'][:14]:<14} {p['kind']:<7} ev {p['events']:>2} "
                  f"caught {p['caught']:>2} alerts {p['alerts']:>2} ok {p['correct_alerts']:>2}"
                  f"  R {rec:>4} P {pre:>4}  thr {p['final_threshold']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
