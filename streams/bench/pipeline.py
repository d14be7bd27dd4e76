"""Pipeline throughput: items/s per modality from Kafka to Redis, against the bare encoder.

One run on the same payloads (`encoders.benchmark.sample_payloads`) measures, per modality:
  - `pipeline` with the configured encoder: N records wait in Kafka, then a real
    `lookout worker` subprocess starts; the clock runs from its readiness until N items are
    in Redis (so producer speed and model loading are not counted). `rounds` times, each
    between two `bare` runs of the same encoder (`bracketed_ratios`);
  - `pipeline` with the `null` encoders (no decoding, a hash of the bytes): the pipeline's
    own ceiling (Kafka, batching, Redis, commits) at next to no encoder cost;
  - `bare` encoder: decode + encode of the same payloads in the worker's batch size, in
    process, no Kafka or Redis, one call after another with all the torch threads;
  - `bare_lanes`: the same on the worker's inference lanes (when it has more than one),
    i.e. the encoder's ceiling with the pipeline's parallelism;
  - `serial_script`: what a plain script does with the same model (kafka-python poll,
    encode, redisvl `load`, commit, one after the other, in this process);
and the ratios pipeline/bare (how much of the encoder's speed the pipeline keeps; the
median of the rounds, and each round), pipeline/bare lanes (what Kafka, Redis and the
worker's own work cost at the same parallelism) and pipeline/serial script (what Lookout's overlap
buys over the obvious loop).
Backs `lookout bench pipeline`; needs Kafka and Redis reachable through `settings`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from encoders.modality import MODALITIES, Modality
from streams.bench.cpu import CpuMeter
from streams.config.settings import Settings
from streams.core.errors import LookoutError
from streams.core.metrics import parse_counters
from streams.worker.process import WorkerProcess, free_port, settings_env

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PipelineBenchRow:
    """One measurement: `kind` is pipeline, bare, bare_lanes or serial_script; `encoders`
    default or null."""

    modality: str
    kind: str
    encoders: str
    spec: str
    items: int
    seconds: float
    items_per_s: float
    startup_s: dict[str, float] | None = None
    """Pipeline rows: the bench worker's `lookout_worker_startup_seconds` per phase."""
    cpu: dict[str, float | None] | None = None
    """CPU seconds over the timed part: the measured process (the worker, or this one for
    the bare and serial rows), all others on the box (Kafka, Redis, the bench), and the
    box's capacity (`streams.bench.cpu`)."""
    round: int | None = None
    """Default-encoder pipeline and bare rows: which round (bare rows 0..rounds, pipeline
    rows 1..rounds, in the order they ran: bare 0, pipeline 1, bare 1, pipeline 2, ...)."""


DEFAULT_N = 2000
"""Items per modality and run: long enough that start-up and the last partial batch do not
dominate (200 items lasted 0.8 s for logs)."""

LOGS_FACTOR = 3
"""Log runs take `LOGS_FACTOR` x n lines: at ~150 lines/s on one thread, 2,000 lines were a
13 s run whose pipeline/bare ratio moved 0.84-1.06 between runs on a quiet box; three runs
of 4,000 gave 1.008, 1.045 and 0.986."""


DEFAULT_ROUNDS = 2
"""Pipeline runs per modality, each between two bare-encoder runs. The 2-core box's speed
drifts by more than the gap being measured: one encoder, the same 2,560 lines in six fresh
processes one after another, ran at 236-311 lines/s; a pipeline/bare ratio from one
pipeline run and one bare run minutes apart moved with it."""


def bracketed_ratios(pipeline: list[float], bare: list[float]) -> list[float]:
    """Each pipeline rate over the mean of the bare rates measured just before and just
    after it (`bare` has one more entry than `pipeline`): a speed that drifts steadily
    through the run cancels out, where pipeline-then-bare would count the drift as the
    pipeline's."""
    if len(bare) != len(pipeline) + 1:
        raise ValueError(f"{len(pipeline)} pipeline rates need {len(pipeline) + 1} bare "
                         f"rates around them, not {len(bare)}")
    return [p / ((bare[i] + bare[i + 1]) / 2) for i, p in enumerate(pipeline)]


def items_for(modality: Modality, n: int) -> int:
    return n * LOGS_FACTOR if modality is Modality.LOGS else n


def worker_env(settings: Settings, prefix: str, port: int, specs: dict[Modality, str]) -> dict:
    """The bench worker: these settings, its own topics/group/port, `specs` as encoders."""
    update: dict[str, object] = {
        "topic_prefix": prefix, "worker_id": f"{prefix}-worker", "web_port": port,
        "web_host": "127.0.0.1", "api_token": None,
    }
    update |= {f"encoder_{m.value}": specs[m] for m in MODALITIES}
    env = settings_env(settings.model_copy(update=update), os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _indexed(worker: WorkerProcess, modality: Modality) -> int:
    """Items the worker says it indexed (its own counter on /metrics). Not a SCAN of Redis:
    on a Redis with 54k keys, scanning every 20 ms took the CPU the pipeline was being
    measured on (ratios fell to 0.54-0.68)."""
    counts = parse_counters(worker.metrics_text(), "lookout_items_indexed_total")
    return int(counts.get(modality.value, 0))


def next_poll_s(done: int, n: int, elapsed_s: float, *, shortest_s: float = 0.02,
                longest_s: float = 0.5) -> float:
    """How long to wait before reading the worker's counter again: a quarter of the time
    the items still missing should take at the rate so far, within [shortest, longest].

    Each read renders the worker's whole /metrics page on its event loop (and holds the
    GIL the inference lanes need): read every 50 ms through a 17 s logs run, that cost
    the measured pipeline ~8% of its rate (py-spy: 108 of the worker's ~1 900 samples in
    `generate_latest`, 40 more in the HTTP handling). Far from the end, reads are sparse;
    near it they are `shortest_s` apart, so the end is still seen within ~20 ms."""
    if done <= 0 or elapsed_s <= 0:
        return longest_s
    remaining_s = (n - done) / (done / elapsed_s)
    return min(longest_s, max(shortest_s, remaining_s / 4))


def drop_indexes(settings: Settings, prefix: str) -> None:
    """Drop the bench's own indexes and their items (topic prefix `prefix`)."""
    import redis

    client = redis.Redis.from_url(settings.resolved_redis_url())
    try:
        for name in client.execute_command("FT._LIST"):
            name = name.decode() if isinstance(name, bytes) else name
            if name.startswith(f"{prefix}:idx:"):
                client.execute_command("FT.DROPINDEX", name, "DD")
    finally:
        client.close()


def _produce(settings: Settings, topic: str, modality: Modality, payloads: list[bytes]) -> None:
    from kafka import KafkaProducer

    from encoders.benchmark import CONTENT_TYPES
    from streams.config.kafka_security import aiokafka_kwargs, kafka_python_kwargs
    from streams.core.wire import encode_headers
    from streams.kafka.admin import ensure_topics_sync, topic_layout

    security = kafka_python_kwargs(settings)
    ensure_topics_sync(settings.resolved_kafka_bootstrap(), [topic], topic_layout(settings),
                       aiokafka_kwargs(settings))
    producer = KafkaProducer(bootstrap_servers=settings.resolved_kafka_bootstrap().split(","),
                             acks="all", linger_ms=20, batch_size=1_000_000,
                             max_request_size=4_000_000, **security)
    try:
        for i, payload in enumerate(payloads):
            producer.send(topic, key=f"bench-{i % 8}".encode(), value=payload,
                          headers=encode_headers(CONTENT_TYPES[modality.value],
                                                 int(time.time() * 1000)))
        producer.flush()
    finally:
        producer.close(timeout=10)


def _pipeline_row(
    settings: Settings, label: str, modality: Modality, spec: str, payloads: list[bytes],
    progress: Progress, timeout_s: float, round_: int | None = None,
) -> PipelineBenchRow:
    """Records wait in Kafka first; the clock runs from the worker's readiness to N items."""

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.{settings.input_topic(modality).split('.', 1)[1]}"
    n = len(payloads)
    progress(f"pipeline ({label}): producing {n} {modality.value} records")
    _produce(settings, topic, modality, payloads)
    specs = dict.fromkeys(MODALITIES, "null") | {modality: spec}  # the others load nothing
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"lookout-{prefix}.log"
    progress(f"pipeline ({label}): worker with {spec} indexes {n} {modality.value} records")
    worker = WorkerProcess.start(worker_env(settings, prefix, port, specs),
                                 f"http://127.0.0.1:{port}", log)
    try:
        start = worker.wait_ready(timeout_s, poll_s=0.02)
        meter = CpuMeter(worker.proc.pid if worker.proc else os.getpid()).start()
        deadline = time.monotonic() + timeout_s
        while (done := _indexed(worker, modality)) < n:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise LookoutError(f"{modality.value}: not all {n} items indexed; see {log}")
            time.sleep(next_poll_s(done, n, time.perf_counter() - start))
        elapsed = time.perf_counter() - start
        cpu = meter.stop()
        startup = parse_counters(worker.metrics_text(), "lookout_worker_startup_seconds",
                                 label="phase")
    finally:
        worker.stop()
        drop_indexes(settings, prefix)
    return PipelineBenchRow(modality.value, "pipeline", label, spec, n, round(elapsed, 3),
                            round(n / elapsed, 2),
                            {k: round(v, 2) for k, v in sorted(startup.items())}, cpu, round_)


def _serial_row(settings: Settings, modality: Modality, spec: str, payloads: list[bytes],
                progress: Progress) -> PipelineBenchRow:
    """The issue's baseline: what a plain serial script does with the same model, no
    Lookout around it (kafka-python poll -> decode + encode -> redisvl `load` -> commit, one
    step after the other). The records wait in Kafka first; the clock runs from the first
    poll to the last commit (the model is loaded before)."""
    from kafka import KafkaConsumer
    from redisvl.index import SearchIndex
    from redisvl.schema import IndexSchema

    from encoders.benchmark import CONTENT_TYPES
    from streams.config.kafka_security import kafka_python_kwargs
    from streams.index.store import build_schema
    from streams.worker.encoders import apply_torch_threads, build_modality_encoder

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.{settings.input_topic(modality).split('.', 1)[1]}"
    n = len(payloads)
    progress(f"serial script: producing {n} {modality.value} records")
    _produce(settings, topic, modality, payloads)
    apply_torch_threads(settings)
    enc = build_modality_encoder(settings, modality, spec)
    schema = build_schema(prefix=prefix, modality=modality, short_id=enc.short_id,
                          dims=enc.dim, datatype=settings.vector_dtype)
    index = SearchIndex(IndexSchema.from_dict(schema), redis_url=settings.resolved_redis_url())
    index.create(overwrite=True)
    batch = settings.batch_size(modality, enc.device.type == "cuda")
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.resolved_kafka_bootstrap().split(","),
        group_id=f"{prefix}-serial", auto_offset_reset="earliest", enable_auto_commit=False,
        max_poll_records=batch, **kafka_python_kwargs(settings))
    ctype = CONTENT_TYPES[modality.value]
    done, start, meter = 0, None, CpuMeter(os.getpid())
    progress(f"serial script: {spec} indexes {n} {modality.value} records")
    try:
        while done < n:
            for records in consumer.poll(timeout_ms=1000).values():
                if start is None:
                    start = time.perf_counter()
                    meter.start()
                vecs = enc.encode_payloads([r.value for r in records], [ctype] * len(records))
                host = vecs.detach().float().cpu().numpy()
                index.load([{"source": r.key.decode(), "ts": r.timestamp, "model": enc.short_id,
                             "embedding": host[i].tobytes(), "topic": r.topic,
                             "partition": r.partition, "offset": r.offset,
                             "content_type": ctype} for i, r in enumerate(records)],
                           keys=[f"{schema['index']['prefix']}{r.partition}:{r.offset}"
                                 for r in records])
                consumer.commit()
                done += len(records)
        elapsed = time.perf_counter() - (start or time.perf_counter())
        cpu = meter.stop()
    finally:
        consumer.close()
        index.delete(drop=True)
    return PipelineBenchRow(modality.value, "serial_script", "default", spec, n,
                            round(elapsed, 3), round(n / max(elapsed, 1e-9), 2), cpu=cpu)


def _bare_row(settings: Settings, label: str, modality: Modality, spec: str,
              payloads: list[bytes], warmup: list[bytes], progress: Progress,
              round_: int | None = None, lanes: bool = False) -> PipelineBenchRow:
    """Decode + encode of `payloads` in the worker's batch size, in this process, by a
    freshly built encoder (a log encoder's template cache must not remember an earlier
    round's lines); warmed on other payloads first. One call after another with all the
    torch threads (`bare`: the encoder as a script calls it), or with `lanes` the batches
    handed to the worker's own inference lanes (`bare_lanes`: the same parallelism as the
    pipeline, without Kafka or Redis)."""
    import torch

    from encoders.benchmark import CONTENT_TYPES
    from streams.worker.encoders import (
        apply_torch_threads,
        build_modality_encoder,
        inference_pool,
    )

    apply_torch_threads(settings)  # the same thread count the worker uses
    kind = "bare_lanes" if lanes else "bare"
    progress(f"{kind} encoder ({label}): {spec} on {len(payloads)} {modality.value} payloads")
    enc = build_modality_encoder(settings, modality, spec)
    ctype = CONTENT_TYPES[modality.value]
    bs = settings.batch_size(modality, enc.device.type == "cuda")
    warm = warmup[:bs]
    enc.encode_payloads(warm, [ctype] * len(warm))
    chunks = [payloads[i:i + bs] for i in range(0, len(payloads), bs)]
    pool = inference_pool(settings) if lanes else None
    meter = CpuMeter(os.getpid()).start()
    start = time.perf_counter()
    if pool is None:
        for chunk in chunks:
            enc.encode_payloads(chunk, [ctype] * len(chunk))
    else:
        try:
            for future in [pool.submit(None, enc.encode_payloads, c, [ctype] * len(c))
                           for c in chunks]:
                future.result()
        finally:
            pool.shutdown()
    if enc.device.type == "cuda":
        torch.cuda.synchronize(enc.device)
    elapsed = time.perf_counter() - start
    return PipelineBenchRow(modality.value, kind, label, spec, len(payloads),
                            round(elapsed, 3), round(len(payloads) / elapsed, 2),
                            cpu=meter.stop(), round=round_)


def _bracketed_rows(settings: Settings, modality: Modality, spec: str, payloads: list[bytes],
                    warmup: list[bytes], rounds: int, progress: Progress,
                    timeout_s: float) -> list[PipelineBenchRow]:
    """bare 0, pipeline 1, bare 1, ..., pipeline `rounds`, bare `rounds`; each bare run
    followed by a bare run on the worker's inference lanes when it has more than one."""
    from streams.worker.encoders import inference_lanes

    on_lanes = (False, True) if inference_lanes(settings) > 1 else (False,)

    def bare(r: int) -> list[PipelineBenchRow]:
        return [_bare_row(settings, "default", modality, spec, payloads, warmup, progress, r,
                          lanes=lanes) for lanes in on_lanes]

    rows = bare(0)
    for r in range(1, rounds + 1):
        rows.append(_pipeline_row(settings, "default", modality, spec, payloads, progress,
                                  timeout_s, r))
        rows += bare(r)
    return rows


def _payloads(sample: Callable, modality: Modality, n: int, seed: int) -> list[bytes]:
    return [p.encode() if isinstance(p, str) else p for p in sample(modality.value, n, seed=seed)]


def run_pipeline_bench(
    settings: Settings,
    *,
    n: int = DEFAULT_N,
    rounds: int = DEFAULT_ROUNDS,
    modalities: tuple[Modality, ...] = MODALITIES,
    progress: Progress | None = None,
    worker_timeout_s: float = 600.0,
) -> dict:
    """Measure and return a JSON-ready report with `results` and `ratios`."""
    from encoders.benchmark import machine_info, sample_payloads

    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, not {rounds}")
    progress = progress or (lambda _msg: None)
    payloads = {m: _payloads(sample_payloads, m, items_for(m, n), seed=0) for m in modalities}
    # other payloads: caches must not see the timed ones
    warmup = {m: _payloads(sample_payloads, m, min(n, 64), seed=1) for m in modalities}
    default_specs = {m: settings.encoder_spec(m) for m in modalities}
    rows: list[PipelineBenchRow] = []
    for m in modalities:
        rows += _bracketed_rows(settings, m, default_specs[m], payloads[m], warmup[m], rounds,
                                progress, worker_timeout_s)
    for m in modalities:  # the pipeline's ceiling: no decoding, a hash of the bytes
        rows.append(_pipeline_row(settings, "null", m, "null", payloads[m], progress,
                                  worker_timeout_s))
        rows.append(_bare_row(settings, "null", m, "null", payloads[m], warmup[m], progress))
    rows += [_serial_row(settings, m, default_specs[m], payloads[m], progress)
             for m in modalities]
    return {
        "machine": machine_info(settings.device),
        "rounds": rounds,
        "items_per_modality": {m.value: items_for(m, n) for m in modalities},
        "results": [asdict(r) for r in rows],
        "ratios": {m.value: pipeline_ratios(rows, m.value) for m in modalities},
    }


def pipeline_ratios(rows: list[PipelineBenchRow], modality: str) -> dict:
    """One modality's ratios. Pipeline/bare: each round against the bare runs around it,
    and their median; the others from the median default pipeline rate."""
    def rates(kind: str, encoders: str) -> list[float]:
        return [r.items_per_s for r in rows
                if (r.modality, r.kind, r.encoders) == (modality, kind, encoders)]

    per_round = bracketed_ratios(rates("pipeline", "default"), rates("bare", "default"))
    pipeline = statistics.median(rates("pipeline", "default"))
    null_pipeline, null_bare = rates("pipeline", "null")[0], rates("bare", "null")[0]
    lanes = {}
    if rates("bare_lanes", "default"):
        lanes_round = bracketed_ratios(rates("pipeline", "default"),
                                       rates("bare_lanes", "default"))
        lanes = {"pipeline_default_over_bare_lanes": round(statistics.median(lanes_round), 3),
                 "pipeline_default_over_bare_lanes_rounds": [round(x, 3) for x in lanes_round]}
    return {
        "pipeline_default_over_bare_default": round(statistics.median(per_round), 3),
        "pipeline_default_over_bare_default_rounds": [round(x, 3) for x in per_round],
        **lanes,
        "pipeline_null_over_pipeline_default": round(null_pipeline / pipeline, 3),
        "pipeline_null_over_bare_null": round(null_pipeline / null_bare, 3),
        "pipeline_default_over_serial_script": round(
            pipeline / rates("serial_script", "default")[0], 3),
    }
