"""One Redis vector index per modality and model: create it, upsert items, search it.

The layout is data (`index_schema.yaml`) loaded by redisvl; this module fills in the index
name, key prefix and vector size, and wraps Redis errors into the Lookout error tree
(`RedisUnavailable` for outages the worker waits out, `IndexStoreError` for the rest).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import redis.exceptions
from redis.asyncio import Redis
from redisvl.exceptions import RedisVLError
from redisvl.index import AsyncSearchIndex
from redisvl.query import FilterQuery, VectorQuery, VectorRangeQuery
from redisvl.query.filter import FilterExpression, Num, Tag
from redisvl.schema import IndexSchema

from encoders.modality import Modality
from streams.core.errors import IndexMismatch, IndexStoreError, RedisUnavailable
from streams.index.catalog import alias_target, list_indexes
from streams.index.naming import (
    IndexRef,
    index_alias,
    index_name,
    key_prefix,
    layout,
    mismatch,
    parse_index_name,
    schema_version,
)
from streams.index.params import VectorIndexParams

log = logging.getLogger(__name__)

VECTOR_FIELD = "embedding"
RETURN_FIELDS = ("source", "ts", "model", "text", "topic", "partition", "offset", "clip_type")
_TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    ConnectionError,
    TimeoutError,
    OSError,
)
T = TypeVar("T")


def stored_fields(modality: Modality) -> list[str]:
    """Names of every hash field an item of `modality` carries (indexed or not)."""
    spec = layout()
    indexed = [f["name"] for f in spec["fields"]["common"] + spec["fields"][modality.value]]
    stored = spec["stored_only"]["common"] + spec["stored_only"][modality.value]
    return indexed + stored


def build_schema(
    *, prefix: str, modality: Modality, short_id: str, dims: int, datatype: str = "float32",
    version: int | None = None, params: VectorIndexParams | None = None,
) -> dict[str, Any]:
    """The redisvl schema dict of one vector space's index, from `schema.yaml`; `version`
    (default: the current one) only names it: the fields are always today's. `params`
    (default: HNSW, M 16, EF_CONSTRUCTION 200) choose how the vector field is built."""
    if dims < 1:
        raise IndexStoreError(f"vector dims must be positive, not {dims}")
    modality = Modality(modality)
    fields: list[dict[str, Any]] = []
    for spec in layout()["fields"]["common"] + layout()["fields"][modality.value]:
        spec = {**spec, "attrs": dict(spec.get("attrs", {}))}
        if spec["type"] == "vector":
            spec["attrs"].update((params or VectorIndexParams()).field_attrs())
            spec["attrs"].update(dims=int(dims), datatype=datatype)
        if not spec["attrs"]:
            del spec["attrs"]
        fields.append(spec)
    return {
        "index": {
            "name": index_name(prefix, modality, short_id, datatype, version),
            "prefix": key_prefix(prefix, modality, short_id, datatype),
            "storage_type": "hash",
        },
        "fields": fields,
    }


def _attr(attrs: Any, name: str) -> str:
    value = getattr(attrs, name, None)
    return str(getattr(value, "value", value)).lower()


def _field_layout(schema: IndexSchema, algorithm: bool = True) -> dict[str, tuple[str, ...]]:
    """name -> (type[, vector dims, datatype, algorithm, distance metric]), lower case."""
    vector_attrs = ("datatype", "algorithm", "distance_metric") if algorithm else (
        "datatype", "distance_metric")
    out: dict[str, tuple[str, ...]] = {}
    for name, f in schema.fields.items():
        kind = str(getattr(f.type, "value", f.type)).lower()
        if kind == "vector":
            out[name] = (kind, str(f.attrs.dims), *(_attr(f.attrs, a) for a in vector_attrs))
        else:
            out[name] = (kind,)
    return out


def schema_differences(existing: IndexSchema, expected: IndexSchema,
                       algorithm: bool = True) -> list[str]:
    """What an existing index does differently from the one this worker would create:
    vector dims, datatype, algorithm (unless `algorithm` is False) or metric, fields
    missing, extra or of another type, another key prefix. Before, only dims were
    compared: switching LOOKOUT_VECTOR_DTYPE to float16 kept the FLOAT32 index, new hashes
    were never indexed and old vectors were decoded as float16."""
    have, want = _field_layout(existing, algorithm), _field_layout(expected, algorithm)
    out = [f"field {n}: {' '.join(have[n])} instead of {' '.join(want[n])}"
           for n in sorted(have.keys() & want.keys()) if have[n] != want[n]]
    out += [f"field {n} missing" for n in sorted(want.keys() - have.keys())]
    out += [f"extra field {n}" for n in sorted(have.keys() - want.keys())]
    prefixes = (list(existing.index.prefix) if isinstance(existing.index.prefix, list)
                else [existing.index.prefix])
    if expected.index.prefix not in prefixes:
        out.append(f"key prefix {prefixes} instead of {expected.index.prefix!r}")
    return out


def vector_build(schema: IndexSchema) -> VectorIndexParams | None:
    """How an index's vector field is built (algorithm; M and EF_CONSTRUCTION for HNSW),
    None when it is something this code does not build (e.g. SVS-VAMANA)."""
    field_ = schema.fields.get(VECTOR_FIELD)
    if field_ is None:
        return None
    algorithm = _attr(field_.attrs, "algorithm")
    try:
        if algorithm != "hnsw":
            return VectorIndexParams(algorithm)
        return VectorIndexParams("hnsw", int(field_.attrs.m), int(field_.attrs.ef_construction))
    except IndexStoreError:
        return None


def rebuild_advice(name: str) -> str:
    """How to rebuild an index with other vector settings, keeping its items."""
    return (f"`lookout index drop {name} --force` (its items stay), then start the worker: it "
            "creates the index anew over the same items and Redis indexes them in the "
            "background (searches miss part of them until `lookout index status` shows 100%)")


@dataclass(frozen=True)
class ItemDoc:
    """What is written to Redis for one item (a hash under `key`)."""

    key: str
    source: str
    ts_ms: int
    vector: np.ndarray
    topic: str
    partition: int
    offset: int
    content_type: str
    text: str | None = None
    thumb: bytes | None = None
    #: an audio item's clip (`LOOKOUT_AUDIO_CLIP_RATE_HZ`) and its content type
    clip: bytes | None = None
    clip_type: str | None = None


@dataclass(frozen=True)
class Hit:
    """One search result; `score` is cosine similarity (1 - cosine distance)."""

    key: str
    score: float
    source: str
    ts_ms: int
    model: str
    text: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredItem:
    """An item read back from Redis, vector included (e.g. an item used as a query example)."""

    key: str
    source: str
    ts_ms: int
    model: str
    vector: np.ndarray
    text: str | None
    thumb: bytes | None
    fields: dict[str, str]


def _is_transient(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _TRANSIENT) and not isinstance(seen, redis.exceptions.ResponseError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def wrap_redis_error(exc: BaseException, what: str, url_hint: str = "") -> IndexStoreError:
    """Turn a redis/redisvl error into RedisUnavailable (transient) or IndexStoreError."""
    where = f" at {url_hint}" if url_hint else ""
    if _is_transient(exc):
        return RedisUnavailable(f"Redis{where} is unreachable during {what}: {exc}")
    return IndexStoreError(f"Redis{where} rejected {what}: {exc}")


class IndexStore:
    """The vector index of one modality and model, over an async Redis client passed in.

    The client must be created with `decode_responses=False` (vectors and thumbnails are
    bytes).
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str,
        modality: Modality,
        model_short_id: str,
        dims: int,
        datatype: str = "float32",
        ttl_s: int | None = None,
        version: int | None = None,
        params: VectorIndexParams | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.modality = Modality(modality)
        self.key_prefix = key_prefix(prefix, self.modality, model_short_id, datatype)
        self.model = model_short_id
        self.dims = int(dims)
        self.datatype = datatype
        self.ttl_s = ttl_s
        self.version = schema_version() if version is None else int(version)
        self.alias = index_alias(prefix, self.modality, model_short_id, datatype)
        self._np_dtype = np.float16 if datatype == "float16" else np.float32
        self.params = params or VectorIndexParams()
        self.schema_dict = build_schema(
            prefix=prefix, modality=self.modality, short_id=model_short_id, dims=dims,
            datatype=datatype, version=self.version, params=self.params,
        )
        self.index = AsyncSearchIndex(
            IndexSchema.from_dict(self.schema_dict), redis_client=client, owns_client=False
        )

    @property
    def name(self) -> str:
        return self.index.name

    @property
    def space(self) -> str:
        """`<model>:<dtype>`: the vector space of this index's items (`WireRecord.space`)."""
        return f"{self.model}:{self.datatype}"

    @property
    def ref(self) -> IndexRef:
        return IndexRef(self.modality, self.model, self.datatype, self.version)

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except IndexStoreError:
            raise
        except (redis.exceptions.RedisError, RedisVLError, OSError) as e:
            raise wrap_redis_error(e, f"{what} on {self.name}") from e

    async def ensure(self) -> None:
        """Create the index (and its alias) when missing, unless an index of another model,
        dtype or schema version holds this modality's items: then stop with what differs
        and the `lookout index` command that resolves it. An existing index must have the
        layout this worker writes."""

        async def run() -> None:
            if await self.index.exists() or not await self._create():
                await self._check_layout()
            await self._claim_alias()

        await self._call("ensure index", run)

    async def _refuse_mismatch(self) -> None:
        """Another index of this modality with items in it: the deployment's vectors are
        elsewhere; silently starting an empty index would hide them from every query."""
        for other in await list_indexes(self.client, self.prefix, self.modality):
            if other.docs == 0 or other.name == self.name:
                continue
            problem = mismatch(f"{other.name} ({other.docs} items)", other.ref, other.datatype,
                               self.ref)
            if problem is not None:
                raise IndexMismatch(problem)

    async def _create(self) -> bool:
        """Create the missing index (unless another one holds this modality's items); False
        when another worker starting at the same moment created it between our check and
        our create: that one's layout is then checked like any existing index's, rather than
        stopping this worker."""
        await self._refuse_mismatch()
        try:
            await self.index.create(overwrite=False)
        except RedisVLError as e:
            if "already exists" in str(e).lower() and await self.index.exists():
                return False
            raise
        log.info("created Redis index %s (dims=%d)", self.name, self.dims)
        return True

    async def _claim_alias(self) -> None:
        """Point the space's alias here when it has none; an alias on another version is
        left to `lookout index migrate` (refused when it names a newer one)."""
        target = await alias_target(self.client, self.alias)
        if target is None:
            try:
                await self.client.execute_command("FT.ALIASADD", self.alias, self.name)
            except redis.exceptions.ResponseError as e:  # another worker was first
                if "exists" not in str(e).lower():
                    raise
            return
        ref = parse_index_name(self.prefix, target)
        if target != self.name and ref is not None:
            problem = mismatch(f"{self.alias} (current: {target})", ref,
                               ref.datatype or self.datatype, self.ref)
            if problem is not None:
                raise IndexMismatch(problem)

    async def _check_layout(self) -> None:
        """The index of this name must have the fields this worker writes (someone may have
        created it by hand, or changed schema.yaml without bumping its version)."""
        existing = await AsyncSearchIndex.from_existing(self.name, redis_client=self.client)
        if not schema_differences(existing.schema, self.index.schema, algorithm=False):
            self._check_vector_build(vector_build(existing.schema))
            return
        differences = schema_differences(existing.schema, self.index.schema)
        if differences:
            raise IndexMismatch(
                f"Redis index {self.name} exists with another layout than this worker "
                f"writes ({'; '.join(differences)}): its items would not be indexed or "
                "would be read as garbage; drop it (`lookout index drop "
                f"{self.name}`; the items stay) or bump the schema version and run "
                f"`lookout index migrate --modality {self.modality.value}`"
            )

    def _check_vector_build(self, built: VectorIndexParams | None) -> None:
        """Another algorithm than LOOKOUT_INDEX_ALGORITHM: refused (the operator asked for
        another trade-off of insert speed against query cost); other HNSW M or
        EF_CONSTRUCTION: the index works as built, so a warning that they apply on a
        rebuild. EF_RUNTIME goes with every query and always applies."""
        want = self.params
        have = built.describe() if built is not None else "another algorithm"
        if built is None or built.algorithm != want.algorithm:
            raise IndexMismatch(
                f"Redis index {self.name} is built with {have}, not the configured "
                f"LOOKOUT_INDEX_ALGORITHM={want.algorithm}: set it back to "
                f"{built.algorithm if built else 'what the index has'}, or rebuild the index: "
                f"{rebuild_advice(self.name)}")
        if built.hnsw and (built.m, built.ef_construction) != (want.m, want.ef_construction):
            log.warning("Redis index %s is built with %s; LOOKOUT_INDEX_HNSW_M=%d and "
                        "LOOKOUT_INDEX_HNSW_EF_CONSTRUCTION=%d apply only once it is rebuilt: "
                        "%s", self.name, built.describe(), want.m, want.ef_construction,
                        rebuild_advice(self.name))

    def _mapping(self, doc: ItemDoc) -> dict[str, Any]:
        vec = np.asarray(doc.vector, dtype=self._np_dtype).reshape(-1)
        if vec.shape[0] != self.dims:
            raise IndexStoreError(
                f"item {doc.key} has a {vec.shape[0]}-d vector; {self.name} holds {self.dims}-d"
            )
        mapping: dict[str, Any] = {
            "source": doc.source,
            "ts": int(doc.ts_ms),
            "model": self.model,
            VECTOR_FIELD: vec.tobytes(),
            "topic": doc.topic,
            "partition": int(doc.partition),
            "offset": int(doc.offset),
            "content_type": doc.content_type,
        }
        if doc.text is not None:
            mapping["text"] = doc.text
        if doc.thumb is not None:
            mapping["thumb"] = doc.thumb
        if doc.clip is not None and doc.clip_type:
            mapping["clip"], mapping["clip_type"] = doc.clip, doc.clip_type
        return mapping

    async def upsert(self, docs: Sequence[ItemDoc]) -> None:
        """Write every item (HSET, then EXPIRE when a TTL is set) in one pipeline round trip."""
        if not docs:
            return
        mappings = [(d.key, self._mapping(d)) for d in docs]

        async def run() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, mapping in mappings:
                    pipe.hset(key, mapping=mapping)
                    if self.ttl_s:
                        pipe.expire(key, int(self.ttl_s))
                await pipe.execute()

        await self._call(f"upsert of {len(docs)} items", run)

    def _filter(
        self, sources: Sequence[str] | None, ts_range: tuple[int | None, int | None] | None
    ) -> FilterExpression:
        expr = Tag("model") == self.model
        if sources:
            exact = [s for s in sources if "*" not in s]
            globs = [s for s in sources if "*" in s]
            src: FilterExpression | None = (Tag("source") == exact) if exact else None
            for pattern in globs:
                like = Tag("source") % pattern
                src = like if src is None else (src | like)
            if src is not None:
                expr = expr & src
        if ts_range:
            start, end = ts_range
            if start is not None:
                expr = expr & (Num("ts") >= int(start))
            if end is not None:
                expr = expr & (Num("ts") <= int(end))
        return expr

    def vector_bytes(self, vector: Any) -> bytes:
        """A vector as this index stores it (its dtype); refuses another dimension."""
        if hasattr(vector, "detach"):
            vector = vector.detach().float().cpu().numpy()
        vec = np.asarray(vector, dtype=self._np_dtype).reshape(-1)
        if vec.shape[0] != self.dims:
            raise IndexStoreError(
                f"query vector has {vec.shape[0]} dims; {self.name} holds {self.dims}-d vectors"
            )
        return vec.tobytes()

    def _hits(self, rows: list[dict[str, Any]]) -> list[Hit]:
        hits = []
        for row in rows:
            distance = float(row.get("vector_distance", 0.0))
            extra = {k: row[k] for k in ("topic", "partition", "offset", "clip_type") if k in row}
            hits.append(
                Hit(
                    key=row["id"],
                    score=1.0 - distance,
                    source=row.get("source", ""),
                    ts_ms=int(float(row.get("ts", 0))),
                    model=row.get("model", ""),
                    text=row.get("text"),
                    fields=extra,
                )
            )
        return hits

    async def knn(
        self,
        vector: Any,
        k: int = 10,
        *,
        sources: Sequence[str] | None = None,
        ts_range: tuple[int | None, int | None] | None = None,
    ) -> list[Hit]:
        """The `k` nearest items, best first; `sources` are ids or `*` globs."""
        query = VectorQuery(
            vector=self.vector_bytes(vector),
            vector_field_name=VECTOR_FIELD,
            return_fields=list(RETURN_FIELDS),
            filter_expression=self._filter(sources, ts_range),
            dtype=self.datatype,
            num_results=int(k),
            ef_runtime=self.params.ef_runtime if self.params.hnsw else None,
        )
        rows = await self._call("KNN search", lambda: self.index.query(query))
        return self._hits(rows)

    async def range(
        self,
        vector: Any,
        min_score: float,
        *,
        sources: Sequence[str] | None = None,
        ts_range: tuple[int | None, int | None] | None = None,
        limit: int = 100,
    ) -> list[Hit]:
        """Items with cosine similarity >= `min_score`, best first (at most `limit`)."""
        if not -1.0 <= min_score <= 1.0:
            raise IndexStoreError(f"min_score must be within -1..1, not {min_score}")
        query = VectorRangeQuery(
            vector=self.vector_bytes(vector),
            vector_field_name=VECTOR_FIELD,
            return_fields=list(RETURN_FIELDS),
            filter_expression=self._filter(sources, ts_range),
            dtype=self.datatype,
            distance_threshold=min(2.0, 1.0 - float(min_score)),
            num_results=int(limit),
        )
        rows = await self._call("range search", lambda: self.index.query(query))
        hits = self._hits(rows)
        return sorted(hits, key=lambda h: h.score, reverse=True)

    async def recent(self, limit: int) -> list[str]:
        """Keys of the newest `limit` items of this model by event time: a sample of what
        the modality has been seeing lately (not ranked by any query, unlike `range`)."""
        query = FilterQuery(filter_expression=self._filter(None, None), return_fields=["ts"],
                            num_results=int(limit), sort_by=("ts", "DESC"))
        rows = await self._call("recent items", lambda: self.index.query(query))
        return [row["id"] for row in rows]

    async def thumbnail(self, key: str) -> bytes | None:
        """The evidence JPEG of a frame (None: no such item, expired, or not a frame)."""
        data = await self._call(f"read of {key}", lambda: self.client.hget(key, "thumb"))
        return bytes(data) if data else None

    async def keep_clip(self, key: str, payload: bytes, content_type: str) -> bool:
        """Keep the matched chunk's bytes with its item (`clip`, `clip_type`), under the
        item's own TTL; False when the item is gone. For items that raised an alert: the
        chunk as sent replaces the smaller clip every audio item keeps
        (`LOOKOUT_AUDIO_CLIP_RATE_HZ`)."""
        async def run() -> bool:
            if not await self.client.exists(key):
                return False
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, mapping={"clip": payload, "clip_type": content_type})
            pipe.ttl(key)
            _, ttl = await pipe.execute()
            if ttl == -1 and self.ttl_s:  # expired and re-created in between: no immortal hash
                await self.client.expire(key, self.ttl_s)
            return True

        return await self._call(f"keeping the clip of {key}", run)

    async def clip(self, key: str) -> tuple[bytes, str] | None:
        """The kept clip of an audio item and its content type (None: none kept)."""
        data, ctype = await self._call(
            f"read of {key}", lambda: self.client.hmget(key, ["clip", "clip_type"]))
        if not data:
            return None
        return bytes(data), (ctype.decode() if isinstance(ctype, bytes) else str(ctype or ""))

    async def get(self, key: str) -> StoredItem | None:
        """One item by key, or None when it is missing (or expired)."""
        raw = await self._call(f"read of {key}", lambda: self.client.hgetall(key))
        return self._stored(key, raw) if raw else None

    async def get_many(self, keys: Sequence[str]) -> list[StoredItem]:
        """The items of `keys` still in Redis, in order, in one round trip."""
        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            return await pipe.execute()

        raws = await self._call(f"read of {len(keys)} items", run) if keys else []
        return [self._stored(k, raw) for k, raw in zip(keys, raws, strict=True) if raw]

    def _stored(self, key: str, raw: dict[Any, Any]) -> StoredItem:
        fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
        vec = np.frombuffer(fields.pop(VECTOR_FIELD, b""), dtype=self._np_dtype)
        thumb = fields.pop("thumb", None)
        fields.pop("clip", None)  # bytes, served by `clip()`; `clip_type` stays, as text
        text = {k: v.decode("utf-8", "replace") for k, v in fields.items()}
        return StoredItem(
            key=key,
            source=text.get("source", ""),
            ts_ms=int(float(text.get("ts", "0"))),
            model=text.get("model", ""),
            vector=vec.astype(np.float32),
            text=text.get("text"),
            thumb=thumb,
            fields=text,
        )
