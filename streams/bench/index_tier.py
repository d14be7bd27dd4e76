"""Index throughput: vectors/s into a Redis vector index, and the recall it still gives.

Each variant gets freshly started embedded Redis servers (`streams.embedded.RedisServer`,
the config `lookout stack up` writes: AOF every second, RediSearch loaded) on free loopback
ports. N clustered 384-d vectors are written the way the worker writes them: pipelines of
HSETs of the logs layout (`build_schema`, `IndexStore._mapping`'s fields), `batch` per round
trip. Reported per variant:

- vectors/s overall and over the last quarter (HNSW slows as the graph grows), with the
  Redis servers' CPU (INFO cpu, cores busy) and memory (INFO memory, FT.INFO);
- recall@10 of KNN queries (the worker's form: model filter, KNN 10) against exact numpy
  search on the float32 vectors, and query latency p50/p99, per EF_RUNTIME for HNSW;
- query latency at each quarter of the fill (how a FLAT tier's cost grows with its size).

Variants: FLAT, HNSW (default and cheaper M/EF_CONSTRUCTION), HNSW in FLOAT16, HNSW
sharded over several Redis servers (one writer thread each, queries fan out and merge),
Redis 8's vector sets (VADD, quantised, CAS: neighbour search off the main thread), and
SVS-VAMANA, which RediSearch 2.10 refuses (the error is the result).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from encoders.modality import Modality
from streams.embedded import RedisServer
from streams.embedded.processes import wait_until
from streams.index.params import VectorIndexParams
from streams.index.store import build_schema, stored_fields
from streams.worker.process import free_port

Progress = Callable[[str], None]

DIMS = 384
DEFAULT_N = 200_000
DEFAULT_QUERIES = 200
DEFAULT_BATCH = 256
K = 10
EF_RUNTIMES = (10, 20, 50, 100, 200)
MODEL = "bench"
PREFIX = "ixbench"
#: Queries timed at each quarter of the fill (latency as the index grows).
FILL_PROBES = 20


@dataclass(frozen=True)
class Variant:
    """One way to index: `kind` search (RediSearch FT index) or vectorset (VADD)."""

    name: str
    kind: str = "search"
    algorithm: str = "hnsw"
    datatype: str = "float32"
    m: int = 16
    ef_construction: int = 200
    shards: int = 1
    #: concurrent writer connections per shard (RediSearch indexes on Redis's main thread,
    #: so more only help vector sets, whose CAS search runs on other threads)
    writers: int = 1
    #: vector sets: Q8 (default), NOQUANT or BIN
    quant: str = "Q8"

    def schema(self, shard: int) -> dict[str, Any]:
        """The worker's logs schema with this variant's vector field (raw algorithm names
        that VectorIndexParams refuses, e.g. svs-vamana, go straight to redisvl)."""
        if self.algorithm in ("hnsw", "flat"):
            params = VectorIndexParams(self.algorithm, self.m, self.ef_construction)
            schema = build_schema(prefix=f"{PREFIX}{shard}", modality=Modality.LOGS,
                                  short_id=MODEL, dims=DIMS, datatype=self.datatype,
                                  params=params)
        else:
            schema = build_schema(prefix=f"{PREFIX}{shard}", modality=Modality.LOGS,
                                  short_id=MODEL, dims=DIMS, datatype=self.datatype)
            for f in schema["fields"]:
                if f["type"] == "vector":
                    f["attrs"]["algorithm"] = self.algorithm
        return schema


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("flat", algorithm="flat"),
    Variant("hnsw", algorithm="hnsw"),
    Variant("hnsw-m8-ef100", algorithm="hnsw", m=8, ef_construction=100),
    Variant("hnsw-float16", algorithm="hnsw", datatype="float16"),
    Variant("hnsw-2-shards", algorithm="hnsw", shards=2),
    Variant("svs-vamana", algorithm="svs-vamana"),
    Variant("vectorset-q8", kind="vectorset", quant="Q8"),
    Variant("vectorset-q8-4-writers", kind="vectorset", quant="Q8", writers=4),
    Variant("vectorset-float32", kind="vectorset", quant="NOQUANT"),
)}
#: What `lookout bench index` runs unless told: the 1-writer vector sets are left out (the
#: 4-writer one shows what they can do; one pipelined writer waits on each CAS in turn).
DEFAULT_VARIANTS = tuple(v for v in VARIANTS if v not in ("vectorset-q8", "vectorset-float32"))


def clustered_vectors(n: int, *, seed: int = 7, clusters: int = 1000, latent: int = 64
                      ) -> np.ndarray:
    """`n` unit vectors in DIMS-d with structure like embeddings: `clusters` centres in a
    `latent`-d subspace, points spread around them in it, a little full-rank noise, mapped
    to DIMS-d by one random projection. (Isotropic noise in 384-d has no near neighbours
    to speak of; real embeddings lie near a low-dimensional manifold.)"""
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((latent, DIMS)).astype(np.float32) / np.sqrt(latent)
    centres = rng.standard_normal((clusters, latent)).astype(np.float32)
    out = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        z = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal(
            (m, latent)).astype(np.float32)
        x = z @ projection + 0.05 * rng.standard_normal((m, DIMS)).astype(np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Indices of the `k` most cosine-similar rows of `data` (unit vectors) per query."""
    sims = queries @ data.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray, k: int = K) -> float:
    """Mean share of each query's true top-k that the index returned in its top-k."""
    hits = [len(set(f[:k]) & set(t[:k].tolist())) / k for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


def percentile_ms(samples_s: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples_s) * 1000.0, q)), 3)


@contextmanager
def redis_servers(count: int, root: Path) -> Iterator[list[redis.Redis]]:
    """`count` fresh embedded Redis servers (as `lookout stack up` configures them) on
    free loopback ports; stopped and their data removed on exit."""
    with ExitStack() as stack:
        clients = []
        for i in range(count):
            server = RedisServer(root / f"redis{i}", free_port())
            proc = server.process(root / f"redis{i}" / "pids", root / f"redis{i}" / "logs")
            stack.callback(_stop, server.start(proc))
            if not wait_until(server.is_ready, 30):
                raise RuntimeError(f"bench Redis did not start: {proc.log_tail()}")
            client = redis.Redis.from_url(server.url, decode_responses=False, protocol=2)
            stack.callback(client.close)
            clients.append(client)
        yield clients


def _stop(popen: subprocess.Popen) -> None:
    """SIGTERM the bench's own server (by its handle), SIGKILL if it lingers."""
    popen.terminate()
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(10)


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds the server process has used (user + system, every thread)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class Fill:
    """Progress samples while writing: (items, wall seconds, Redis CPU seconds)."""

    samples: list[tuple[int, float, float]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)

    def rate(self, first: int, last: int) -> dict[str, float]:
        (n0, t0, c0), (n1, t1, c1) = self.samples[first], self.samples[last]
        wall = max(t1 - t0, 1e-9)
        return {"items": n1 - n0, "seconds": round(wall, 3),
                "vectors_per_s": round((n1 - n0) / wall, 1),
                "redis_cpu_cores": round((c1 - c0) / wall, 2),
                "vectors_per_redis_cpu_s": round((n1 - n0) / max(c1 - c0, 1e-9), 1)}


class Target:
    """Where one variant writes and searches: one or more Redis servers."""

    def __init__(self, variant: Variant, clients: list[redis.Redis]) -> None:
        self.variant = variant
        self.clients = clients
        self.fields = [f for f in stored_fields(Modality.LOGS)
                       if f not in ("embedding", "thumb")]
        self.dtype = np.float16 if variant.datatype == "float16" else np.float32
        self.schemas = [variant.schema(i) for i in range(len(clients))]

    def create(self) -> None:
        """Create the index of every shard (vector sets need none)."""
        if self.variant.kind != "search":
            return
        from redisvl.index import SearchIndex
        from redisvl.schema import IndexSchema

        for client, schema in zip(self.clients, self.schemas, strict=True):
            SearchIndex(IndexSchema.from_dict(schema), redis_client=client).create()

    def key(self, shard: int, i: int) -> str:
        return f"{self.schemas[shard]['index']['prefix']}bench:0:{i}"

    def write(self, shard: int, rows: Sequence[int], vectors: np.ndarray) -> None:
        """One pipeline round trip: the worker's HSET per item (and VADD for vector sets)."""
        pipe = self.clients[shard].pipeline(transaction=False)
        vs = self.variant.kind == "vectorset"
        for i in rows:
            blob = vectors[i].astype(self.dtype).tobytes()
            mapping = {"source": f"cam-{i % 50}", "ts": 1_700_000_000_000 + i, "model": MODEL,
                       "topic": "lookout.logs", "partition": i % 4, "offset": i,
                       "content_type": "text/plain", "text": f"GET /api/v1/items/{i} 200"}
            if not vs:
                mapping["embedding"] = blob
            key = self.key(shard, i)
            pipe.hset(key, mapping=mapping)
            if vs:
                attrs = json.dumps({"source": mapping["source"], "ts": mapping["ts"]})
                pipe.execute_command("VADD", f"{PREFIX}{shard}:vset", "FP32", blob, key,
                                     "CAS", self.variant.quant, "EF",
                                     self.variant.ef_construction, "SETATTR", attrs, "M",
                                     self.variant.m)
        pipe.execute()

    def wait_indexed(self, n: int, timeout_s: float = 600) -> None:
        """HSETs into an existing index are indexed synchronously in 2.10; wait anyway
        until every shard reports its items indexed, so no backlog is left uncounted."""
        if self.variant.kind != "search":
            return

        def done() -> bool:
            total = 0
            for client, schema in zip(self.clients, self.schemas, strict=True):
                info = client.ft(schema["index"]["name"]).info()
                if float(info.get("percent_indexed", 0)) < 1.0:
                    return False
                total += int(info["num_docs"])
            return total >= n

        if not wait_until(done, timeout_s, 0.05):
            raise RuntimeError(f"{self.variant.name}: items still unindexed after {timeout_s}s")

    def search_one(self, shard: int, vector: np.ndarray, ef: int | None) -> list[tuple[float,
                                                                                          int]]:
        """(distance, item number) of the K nearest on one shard."""
        client = self.clients[shard]
        if self.variant.kind == "vectorset":
            args = ["VSIM", f"{PREFIX}{shard}:vset", "FP32",
                    vector.astype(np.float32).tobytes(), "COUNT", K, "WITHSCORES"]
            if ef:
                args += ["EF", ef]
            reply = client.execute_command(*args)
            pairs = reply.items() if isinstance(reply, dict) else zip(
                reply[::2], reply[1::2], strict=True)
            return [(1.0 - float(score), int(key.decode().rsplit(":", 1)[1]))
                    for key, score in pairs]
        ef_clause = " EF_RUNTIME $EF" if ef else ""
        query = (f"(@model:{{{MODEL}}})=>[KNN {K} @embedding $vec{ef_clause} "
                 "AS vector_distance]")
        params: dict[str, Any] = {"vec": vector.astype(self.dtype).tobytes()}
        if ef:
            params["EF"] = ef
        returned = ["vector_distance", "source", "ts", "model", "text", "topic", "partition",
                    "offset"]
        reply = client.execute_command(
            "FT.SEARCH", self.schemas[shard]["index"]["name"], query, "PARAMS",
            len(params) * 2, *[x for kv in params.items() for x in kv], "SORTBY",
            "vector_distance", "RETURN", len(returned), *returned, "LIMIT", 0, K,
            "DIALECT", 2)
        out = []
        for key, fields in zip(reply[1::2], reply[2::2], strict=True):
            row = dict(zip(fields[::2], fields[1::2], strict=True))
            out.append((float(row[b"vector_distance"]), int(key.decode().rsplit(":", 1)[1])))
        return out

    def search(self, vector: np.ndarray, ef: int | None, pool: ThreadPoolExecutor | None
               ) -> list[int]:
        """Item numbers of the K nearest over every shard (fan out, merge by distance)."""
        if len(self.clients) == 1 or pool is None:
            rows = [r for s in range(len(self.clients)) for r in self.search_one(s, vector, ef)]
        else:
            rows = [r for part in pool.map(lambda s: self.search_one(s, vector, ef),
                                           range(len(self.clients))) for r in part]
        return [i for _, i in sorted(rows)[:K]]

    def memory(self) -> dict[str, float]:
        used = sum(int(c.info("memory")["used_memory"]) for c in self.clients)
        out = {"redis_used_memory_mb": round(used / 2**20, 1)}
        if self.variant.kind == "search":
            out["vector_index_mb"] = round(sum(
                float(c.ft(s["index"]["name"]).info().get("vector_index_sz_mb", 0))
                for c, s in zip(self.clients, self.schemas, strict=True)), 1)
        return out


def _fill(target: Target, vectors: np.ndarray, queries: np.ndarray, batch: int,
          progress: Progress) -> Fill:
    """Write every vector, `writers` threads per shard (item i goes to writer slot
    i % (shards * writers), shard slot % shards);
    sample the rate at each twentieth and time a few queries at each quarter (their wall
    and Redis CPU time are kept off the fill's clock)."""
    n, shards = len(vectors), len(target.clients)
    slots = shards * target.variant.writers
    fill = Fill()
    off = [0.0, 0.0]  # wall, Redis CPU spent probing
    start = time.perf_counter()

    def sample(done: int) -> None:
        cpu = sum(redis_cpu_s(c) for c in target.clients)
        fill.samples.append((done, time.perf_counter() - start - off[0], cpu - off[1]))

    sample(0)
    with ThreadPoolExecutor(max_workers=slots) as pool:
        done = 0
        for mark in (n * q // 20 for q in range(1, 21)):
            chunk = range(done, mark)
            list(pool.map(lambda s, c=chunk: _write_rows(target, s, slots, c, vectors, batch),
                          range(slots)))
            done = mark
            sample(done)
            if done in (n // 4, n // 2, 3 * n // 4):
                t0, c0 = time.perf_counter(), sum(redis_cpu_s(c) for c in target.clients)
                lat = _timed(target, queries[:FILL_PROBES], None, pool)[1]
                off[0] += time.perf_counter() - t0
                off[1] += sum(redis_cpu_s(c) for c in target.clients) - c0
                fill.probes.append({"items": done, "p50_ms": percentile_ms(lat, 50),
                                    "p99_ms": percentile_ms(lat, 99)})
            progress(f"{target.variant.name}: {done}/{n} "
                     f"({fill.rate(-2, -1)['vectors_per_s']:.0f}/s)")
    target.wait_indexed(n)
    sample(n)
    return fill


def _write_rows(target: Target, slot: int, slots: int, rows: range, vectors: np.ndarray,
                batch: int) -> None:
    """One writer: its share of `rows`, `batch` per pipeline (redis-py's client is
    thread-safe: each pipeline takes its own pooled connection)."""
    mine = [i for i in rows if i % slots == slot]
    for start in range(0, len(mine), batch):
        target.write(slot % len(target.clients), mine[start:start + batch], vectors)


def _timed(target: Target, queries: np.ndarray, ef: int | None,
           pool: ThreadPoolExecutor | None) -> tuple[list[list[int]], list[float]]:
    found, lat = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(target.search(q, ef, pool))
        lat.append(time.perf_counter() - t0)
    return found, lat


def _quality(target: Target, queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """Recall@10 and latency per EF_RUNTIME (HNSW, vector sets) or once (FLAT)."""
    efs: Sequence[int | None] = (None,) if target.variant.algorithm == "flat" else EF_RUNTIMES
    out = []
    with ThreadPoolExecutor(max_workers=len(target.clients)) as pool:
        for ef in efs:
            found, lat = _timed(target, queries, ef, pool)
            out.append({"ef_runtime": ef, "recall_at_10": round(recall_at_k(found, truth), 4),
                        "p50_ms": percentile_ms(lat, 50), "p99_ms": percentile_ms(lat, 99)})
    return out


def run_variant(variant: Variant, vectors: np.ndarray, queries: np.ndarray,
                truth: np.ndarray, *, batch: int = DEFAULT_BATCH,
                progress: Progress = lambda _m: None) -> dict[str, Any]:
    """Fresh Redis server(s), fill, measure; a variant Redis refuses reports the error."""
    with tempfile.TemporaryDirectory(prefix="lookout-ixbench-") as tmp, \
            redis_servers(variant.shards, Path(tmp)) as clients:
        target = Target(variant, clients)
        row: dict[str, Any] = {"variant": variant.name, "kind": variant.kind,
                               "algorithm": variant.algorithm, "datatype": variant.datatype,
                               "shards": variant.shards, "writers": variant.writers,
                               "items": len(vectors)}
        if variant.algorithm == "hnsw" or variant.kind == "vectorset":
            row |= {"m": variant.m, "ef_construction": variant.ef_construction}
        if variant.kind == "vectorset":
            row["quantisation"] = variant.quant
        try:
            target.create()
        except Exception as e:  # noqa: BLE001 - what Redis says is the result
            progress(f"{variant.name}: refused: {e}")
            return row | {"error": str(e)}
        client_cpu0 = time.process_time()
        fill = _fill(target, vectors, queries, batch, progress)
        last = len(fill.samples) - 1
        quarter = next(i for i, s in enumerate(fill.samples) if s[0] >= 3 * len(vectors) // 4)
        row |= {"overall": fill.rate(0, last), "last_quarter": fill.rate(quarter, last),
                "bench_client_cpu_s": round(time.process_time() - client_cpu0, 1),
                "curve": [fill.rate(i - 1, i) | {"at_items": fill.samples[i][0]}
                          for i in range(1, len(fill.samples) - 1)],
                "latency_while_filling": fill.probes,
                "memory": target.memory(), "quality": _quality(target, queries, truth)}
        row["best"] = best_ef(row["quality"])
        return row


def best_ef(quality: Sequence[dict[str, Any]], target: float = 0.95) -> dict[str, Any] | None:
    """The cheapest setting that reaches `target` recall@10 (None: none does)."""
    return next((q for q in quality if q["recall_at_10"] >= target), None)


def run_index_bench(n: int = DEFAULT_N, variants: Sequence[str] = DEFAULT_VARIANTS, *,
                    queries: int = DEFAULT_QUERIES, batch: int = DEFAULT_BATCH,
                    progress: Progress = lambda _m: None) -> dict[str, Any]:
    """Every variant on the same vectors and queries; one JSON-ready report."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown index variants {unknown}; known: {', '.join(VARIANTS)}")
    module = _module_version()
    data = clustered_vectors(n + queries)
    vectors, qs = data[:n], data[n:]
    truth = exact_top_k(vectors, qs)
    results = []
    for name in variants:
        progress(f"{name}: {n} vectors")
        results.append(run_variant(VARIANTS[name], vectors, qs, truth, batch=batch,
                                   progress=progress))
    return {"n": n, "dims": DIMS, "queries": queries, "batch": batch, "k": K,
            "search_module": module, "load_average_1m": round(os.getloadavg()[0], 2),
            "results": results, "ratios": _ratios(results)}


def _module_version() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lookout-ixbench-") as tmp, \
            redis_servers(1, Path(tmp)) as (client,):
        modules = {}
        for entry in client.execute_command("MODULE", "LIST"):
            pairs = dict(zip(entry[::2], entry[1::2], strict=False))
            modules[pairs[b"name"].decode()] = int(pairs[b"ver"])
        return {"redis": client.info("server")["redis_version"], "modules": modules}


def _ratios(results: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Each variant's sustained (last-quarter) rate over default HNSW's."""
    base = next((r for r in results if r["variant"] == "hnsw" and "error" not in r), None)
    if base is None:
        return {}
    ref = base["last_quarter"]["vectors_per_s"]
    return {f"{r['variant']}_vs_hnsw_last_quarter": round(
        r["last_quarter"]["vectors_per_s"] / ref, 2) for r in results
        if "error" not in r and r is not base}

