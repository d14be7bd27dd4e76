"""Log lines/s at template speed: the log encoder on the realistic corpus and on
all-distinct lines, float32 and int8, in one run (the box is shared: compare ratios).

Per encoder spec (`minilm`, and `minilm:int8` / `minilm:bf16` where the CPU can run them):
  - `realistic`: `LogCorpus` lines, decode + encode in the worker's batch size, after a
    warm-up stretch of the same stream (a running worker's cache is warm; the rare tail
    and new template variants still miss). The template cache is the encoder's own.
  - `realistic_exact`: the same timed lines through a cache keyed on the exact line (and
    the raw line embedded): what caching without masking would give.
  - `distinct`: lines that differ after masking, so every one runs the model.
No Kafka or Redis: the pipeline bench covers those.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from encoders.modality import Modality
from streams.config.settings import Settings

if TYPE_CHECKING:  # torch loads with the bench, not with the CLI that offers it
    import torch

    from encoders.base import Encoder
    from encoders.log_text import EmbeddingCache

Progress = Callable[[str], None]
DEFAULT_LINES = 20_000
DEFAULT_WARMUP = 20_000
DEFAULT_DISTINCT = 2_000


@dataclass(frozen=True)
class LogBenchRow:
    """One timed pass: `corpus` realistic|realistic_exact|distinct, `cache_hit_rate` over it."""

    spec: str
    model_id: str
    corpus: str
    lines: int
    seconds: float
    lines_per_s: float
    cache_hit_rate: float


def _timed(encoder: Encoder, lines: Sequence[str], batch: int,
           embed: Callable[[list[str]], torch.Tensor] | None = None) -> tuple[float, torch.Tensor]:
    """Seconds to decode + encode `lines` in batches (bytes in, vectors out), and the vectors."""
    import torch

    from encoders.log_text import decode_log

    payloads = [line.encode() for line in lines]
    out = []
    start = time.perf_counter()
    for i in range(0, len(payloads), batch):
        chunk = payloads[i:i + batch]
        if embed is None:
            out.append(encoder.encode_payloads(chunk, ["text/plain"] * len(chunk)))
        else:
            out.append(embed([decode_log(p, "text/plain") for p in chunk]))
    return time.perf_counter() - start, torch.cat(out)


def _hit_rate(cache: EmbeddingCache, before: tuple[int, int]) -> float:
    hits, misses = cache.hits - before[0], cache.misses - before[1]
    return round(hits / max(hits + misses, 1), 4)


def _bench_spec(settings: Settings, spec: str, warmup: list[str], timed: list[str],
                distinct: list[str], progress: Progress) -> tuple[list[LogBenchRow], torch.Tensor]:
    from encoders.log_text import EmbeddingCache
    from streams.worker.encoders import build_modality_encoder

    progress(f"logs bench: loading {spec}")
    enc = build_modality_encoder(settings, Modality.LOGS, spec)
    cache = enc.cache  # type: ignore[attr-defined]
    batch = settings.batch_size(Modality.LOGS, enc.device.type == "cuda")
    rows = []

    def row(corpus: str, lines: list[str], seconds: float, hit_rate: float) -> LogBenchRow:
        return LogBenchRow(spec, enc.model_id, corpus, len(lines), round(seconds, 3),
                           round(len(lines) / seconds, 1), hit_rate)

    progress(f"logs bench: {spec} warm-up on {len(warmup)} lines, then {len(timed)} timed")
    _timed(enc, warmup, batch)
    before = (cache.hits, cache.misses)
    seconds, _ = _timed(enc, timed, batch)
    rows.append(row("realistic", timed, seconds, _hit_rate(cache, before)))

    progress(f"logs bench: {spec} exact-line cache on {len(distinct)} realistic lines")
    exact = EmbeddingCache(cache.max_entries)
    embedder = enc.embedder  # type: ignore[attr-defined]
    some = timed[:len(distinct)]
    with enc.runtime.inference():
        seconds, _ = _timed(enc, some, batch,
                            lambda texts: exact.embed(texts, lambda miss: embedder(miss, batch)))
    rows.append(row("realistic_exact", some, seconds, _hit_rate(exact, (0, 0))))

    progress(f"logs bench: {spec} on {len(distinct)} distinct lines")
    before = (cache.hits, cache.misses)
    seconds, vectors = _timed(enc, distinct, batch)
    rows.append(row("distinct", distinct, seconds, _hit_rate(cache, before)))
    return rows, vectors


def run_log_bench(
    settings: Settings,
    *,
    n: int = DEFAULT_LINES,
    warmup: int = DEFAULT_WARMUP,
    n_distinct: int = DEFAULT_DISTINCT,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    """Measure and return a JSON-ready report with `results` and `ratios`."""
    import torch

    from encoders.quantize import cpu_has_bf16, cpu_has_vnni
    from streams.bench.log_corpus import LogCorpus, distinct_lines
    from streams.worker.encoders import apply_torch_threads

    progress = progress or (lambda _msg: None)
    apply_torch_threads(settings)  # the worker's thread count
    corpus = LogCorpus(seed)
    warm, timed = corpus.lines(warmup), corpus.lines(n)
    distinct = distinct_lines(n_distinct, seed)
    specs = (["minilm"] + (["minilm:int8"] if cpu_has_vnni() else [])
             + (["minilm:bf16"] if cpu_has_bf16() else []))
    rows: list[LogBenchRow] = []
    vectors = {}
    for spec in specs:
        spec_rows, vectors[spec] = _bench_spec(settings, spec, warm, timed, distinct, progress)
        rows += spec_rows
    rate = {(r.spec, r.corpus): r.lines_per_s for r in rows}
    ratios = {spec: {"realistic_over_distinct": round(rate[(spec, "realistic")]
                                                      / rate[(spec, "distinct")], 2),
                     "template_cache_over_exact_cache": round(
                         rate[(spec, "realistic")] / rate[(spec, "realistic_exact")], 2)}
              for spec in specs}
    report: dict = {"torch_threads": torch.get_num_threads(), "seed": seed,
                    "warmup_lines": warmup, "results": [asdict(r) for r in rows],
                    "ratios": ratios}
    for variant in ("int8", "bf16"):
        spec = f"minilm:{variant}"
        if spec not in vectors:
            continue
        for corpus in ("realistic", "distinct"):
            ratios[f"{variant}_over_float_{corpus}"] = round(
                rate[(spec, corpus)] / rate[("minilm", corpus)], 2)
        cosine = (vectors["minilm"] * vectors[spec]).sum(dim=-1)
        report[f"{variant}_min_cosine_distinct"] = round(float(cosine.min()), 4)
    return report
