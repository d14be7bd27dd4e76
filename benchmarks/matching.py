"""Items/s of the pipeline's matching path with 1 vs N standing queries (default 10,000).

Two figures per query count, on the device the encoder runs on:

- `match`: `PatternMatrix.match` alone on unit vectors of the encoder's dim (the extra
  work standing queries add to each batch);
- `encode+match`: the encoder's forward pass on real decoded items followed by matching,
  i.e. what the agent does per batch minus Redis I/O.

The ratio `items/s at N / items/s at 1` for `encode+match` is the "per-item cost stays
flat" figure; `match` alone shows the absolute cost of the product. On a busy machine the
end-to-end ratio is noisy, so `derived_pipeline_ratio_vs_first` also combines the encode
time and the extra match time, each measured on its own.

    python -m benchmarks.matching --encoder minilm --modality logs --queries 1 10000
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from encoders.registry import build_encoder
from streams.alerting.thresholds import ThresholdKeeper
from streams.core.metrics import Metrics
from streams.queries.matching import PatternMatrix, QueryPatterns
from streams.queries.model import RegisteredQuery, StandingQuery
from streams.queries.registry import vectors_to_b64


def random_patterns(n: int, dim: int, device: torch.device, seed: int = 0) -> PatternMatrix:
    g = torch.Generator().manual_seed(seed)
    vecs = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)
    empty = torch.zeros(0, dim)
    globs = [("*",), ("cam-*",), ("api-?",), ("svc-*", "db-*")]
    patterns = [
        QueryPatterns(f"q{i}", vecs[i : i + 1], empty, 0.6, 0.0, globs[i % len(globs)])
        for i in range(n)
    ]
    return PatternMatrix(patterns, dim, device)


def auto_threshold_keeper(matrix: PatternMatrix) -> ThresholdKeeper:
    """The worker's `threshold: auto` bookkeeping for every query of `matrix` (its per-batch
    `observe`, which needs no Redis), over a registry that knows them all as auto."""
    queries = {
        qid: RegisteredQuery(
            query=StandingQuery(id=qid, name=qid, modality="logs", positives=["x"]),
            fingerprint=qid, model_id="bench", dim=matrix.dim,
            positive_vectors_b64=vectors_to_b64(matrix.positives[i:i + 1]))
        for i, qid in enumerate(matrix.query_ids)}

    class Queries:
        find = staticmethod(queries.get)

    return ThresholdKeeper(None, "bench", Queries(), Metrics())  # type: ignore[arg-type]


def sample_items(modality: str, n: int, seed: int = 0) -> list:
    """Decoded items of the encoder's input kind (what `encoder.encode` receives)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if modality == "logs":
        words = ["disk", "full", "error", "timeout", "user", "login", "ok", "GET", "/api", "503",
                 "upstream", "refused", "kernel", "cache", "miss", "retry", "payment", "queue"]
        return [" ".join(rng.choice(words, 12)) + f" req={seed}-{i}" for i in range(n)]
    if modality == "video":
        return [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(n)]
    return [torch.from_numpy(rng.standard_normal(16000).astype("float32")) for _ in range(n)]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(encoder_spec: str, modality: str, query_counts: list[int], batch: int, batches: int,
        device: str) -> dict:
    encoder = build_encoder(encoder_spec, modality, device=device)
    cache = getattr(encoder, "cache", None)
    if cache is not None:  # measure the model, not the log-template cache
        cache.max_entries = 0
        cache.clear()
    dim, dev = encoder.dim, encoder.device
    pool = [sample_items(modality, batch, seed) for seed in range(4)]
    turn = iter(range(10**9))
    sources = [["cam-gate", "api-1", "svc-x", "db-main"][i % 4] for i in range(batch)]
    stamps = list(range(batch))
    g = torch.Generator().manual_seed(1)
    vectors = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g), dim=1).to(dev)
    results = {"encoder": encoder.model_id, "device": str(dev), "dim": dim, "batch": batch,
               "runs": []}
    for n in query_counts:
        matrix = random_patterns(n, dim, dev)
        t_match = timed(lambda m=matrix: m.match(vectors, sources), batches * 5)
        t_full = timed(
            lambda m=matrix: m.match(encoder.encode(pool[next(turn) % len(pool)]), sources),
            batches)
        keeper = auto_threshold_keeper(matrix)
        best = matrix.scores(vectors)[0]
        t_auto = timed(lambda m=matrix, k=keeper, b=best: k.observe(m, b, sources, stamps),
                       batches * 5)
        results["runs"].append({
            "queries": n,
            "auto_threshold_us_per_item": round(1e6 * t_auto / (batch * batches * 5), 2),
            "match_items_per_s": round(batch * batches * 5 / t_match, 1),
            "encode_match_items_per_s": round(batch * batches / t_full, 1),
        })
    t_encode = timed(lambda: encoder.encode(pool[next(turn) % len(pool)]), batches)
    encode_s_per_item = t_encode / (batch * batches)
    results["encode_items_per_s"] = round(1 / encode_s_per_item, 1)
    base = results["runs"][0]
    for r in results["runs"]:
        # Less noisy on a shared machine: encode and match timed apart, then combined.
        extra = 1 / r["match_items_per_s"] - 1 / base["match_items_per_s"]
        r["match_us_per_item"] = round(1e6 / r["match_items_per_s"], 2)
        r["derived_pipeline_ratio_vs_first"] = round(
            encode_s_per_item / (encode_s_per_item + extra), 4)
        r["encode_match_ratio_vs_first"] = round(
            r["encode_match_items_per_s"] / base["encode_match_items_per_s"], 4)
        r["match_ratio_vs_first"] = round(r["match_items_per_s"] / base["match_items_per_s"], 4)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--modality", default="logs")
    ap.add_argument("--queries", type=int, nargs="+", default=[1, 10_000])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    print(json.dumps(run(args.encoder, args.modality, args.queries, args.batch, args.batches,
                         args.device), indent=2))


if __name__ == "__main__":
    main()
