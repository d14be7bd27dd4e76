"""Durable standing queries shared by every worker, through one compacted Kafka topic.

Key = query id, value = a `RegisteredQuery` as JSON (spec + pattern vectors computed once
at registration with the modality's encoder), tombstone (null value) = deleted. Every
worker reads the WHOLE topic without a consumer group (all partitions assigned, from the
beginning, then following), so a query registered through any worker is active on every
worker within a poll interval, and after a restart the set is rebuilt from the topic.
On each change the `PatternMatrix` of the affected modality is rebuilt.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import numpy as np
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from encoders.base import Encoder
from encoders.errors import EncoderInputError, NoTextSpace
from encoders.modality import Modality
from streams.core.errors import (
    LookoutError,
    QueryNotFound,
    QueryTooLarge,
    QueryValidationError,
)
from streams.kafka.admin import TopicLayout, assigned_consumer, ensure_topic
from streams.queries.composite import CompositeQuery, RegisteredComposite, check_members
from streams.queries.matching import PatternMatrix, QueryPatterns
from streams.queries.model import (
    PatternExample,
    PolicyRule,
    RegisteredQuery,
    StandingQuery,
    Webhook,
    parse_query,
    require_secret_envs,
)
from streams.queries.sites import SITES_KEY, SiteMap
from streams.queries.thresholds import needs_centering, prior_for

log = logging.getLogger(__name__)

RunEncoder = Callable[..., Awaitable[Any]]
ItemLookup = Callable[[Modality, str], Awaitable[Any]]
"""`lookup(modality, item_key)` -> object with `.vector` and `.model`, or None."""


class RegistryError(LookoutError):
    """The query topic could not be read or written."""


def vectors_to_b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.detach().float().cpu().contiguous().numpy().tobytes()).decode()


def vectors_from_b64(data: str, dim: int) -> torch.Tensor:
    if not data:
        return torch.zeros(0, dim)
    arr = np.frombuffer(base64.b64decode(data), dtype=np.float32)
    return torch.from_numpy(arr.copy()).reshape(-1, dim)


async def compute_pattern_vectors(
    query: StandingQuery, encoder: Encoder, run_encoder: RunEncoder, lookup: ItemLookup | None
) -> RegisteredQuery:
    """Embed every positive and negative example once, with the modality's encoder."""

    async def embed(examples: list[PatternExample], role: str) -> torch.Tensor:
        rows: list[torch.Tensor] = []
        texts = [e.text for e in examples if e.text is not None]
        if texts:
            try:
                rows.append(await run_encoder(encoder.encode_text, texts))
            except NoTextSpace as e:
                raise QueryValidationError(
                    f"query {query.id!r}: {role} text patterns need a {query.modality} "
                    f"encoder with a text space, or use example files instead; {e}"
                ) from e
        for ex in examples:
            if ex.payload_b64 is not None:
                try:
                    vec = await run_encoder(encoder.embed_example, ex.payload, ex.content_type)
                except EncoderInputError as e:
                    raise QueryValidationError(
                        f"query {query.id!r}: unreadable {role} example "
                        f"{ex.file or ex.content_type or ''}: {e}"
                    ) from e
                rows.append(vec.reshape(1, -1))
            elif ex.item_key is not None:
                item = await lookup(query.modality, ex.item_key) if lookup else None
                if item is None:
                    raise QueryValidationError(
                        f"query {query.id!r}: {role} item {ex.item_key} is not in the index "
                        "(expired, or never indexed); use a recent key from `lookout search`"
                    )
                if getattr(item, "model", encoder.short_id) not in ("", encoder.short_id):
                    raise QueryValidationError(
                        f"query {query.id!r}: item {ex.item_key} was embedded by {item.model}, "
                        f"not by this worker's {encoder.short_id}"
                    )
                vector = np.asarray(item.vector, dtype=np.float32)
                rows.append(torch.as_tensor(vector).reshape(1, -1))
            elif ex.text is None:
                raise QueryValidationError(
                    f"query {query.id!r}: {role} example {ex.describe()} has no payload; "
                    "send the example bytes again to change the query's examples"
                )
        if not rows:
            return torch.zeros(0, encoder.dim)
        out = torch.cat([r.detach().float().cpu().reshape(-1, encoder.dim) for r in rows])
        return torch.nn.functional.normalize(out, dim=1)

    positives = await embed(query.positives, "positive")
    negatives = await embed(query.negatives, "negative")
    if positives.shape[0] == 0:
        raise QueryValidationError(f"query {query.id!r} has no usable positive example")
    return RegisteredQuery(
        query=query.stored(),
        fingerprint=query.fingerprint(),
        model_id=encoder.model_id,
        dim=encoder.dim,
        positive_vectors_b64=vectors_to_b64(positives),
        negative_vectors_b64=vectors_to_b64(negatives),
    )


#: A query record must fit Kafka's default 1 MiB message limit (producer and topic), with
#: room for the key and the record overhead.
MAX_RECORD_BYTES = 1_000_000


def check_record_size(query_id: str, value: bytes | None) -> None:
    """Refuse, before sending, a query record Kafka would refuse (MessageSizeTooLarge)."""
    if value is not None and len(value) > MAX_RECORD_BYTES:
        raise QueryTooLarge(
            f"query {query_id!r} is {len(value):,} bytes as a registered record (one pattern "
            f"vector per example); the queries topic takes at most {MAX_RECORD_BYTES:,}: "
            "use fewer or shorter examples")


def decoded_vectors(rq: RegisteredQuery) -> tuple[torch.Tensor, torch.Tensor]:
    """(positives [P, d], negatives [N, d]) of a registered query."""
    return (vectors_from_b64(rq.positive_vectors_b64, rq.dim),
            vectors_from_b64(rq.negative_vectors_b64, rq.dim))


def bound_to(rq: RegisteredQuery, encoder: Encoder) -> bool:
    """Whether the query's pattern vectors were computed by this encoder's model."""
    return rq.model_id == encoder.model_id and rq.dim == encoder.dim


def stale_reason(rq: RegisteredQuery, encoder: Encoder | None) -> str | None:
    """Why a worker with `encoder` skips `rq` and what fixes it; None when it is live (or
    the worker has no encoder of its modality, so nothing to compare with)."""
    if encoder is None or bound_to(rq, encoder):
        return None
    modality = rq.query.modality.value
    return (f"registered with {rq.model_id} ({rq.dim}-d); this worker's {modality} encoder "
            f"is {encoder.model_id} ({encoder.dim}-d), so it is skipped: no matches, "
            "no alerts. Fix: `lookout query apply <your queries file>` (re-registers stale "
            "queries even when unchanged), or register it again (`lookout query add`, "
            "POST /queries) so this model embeds its examples")


def starting_threshold(q: StandingQuery, encoder: Encoder) -> float:
    """A fixed threshold as given; an auto one starts at the encoder's prior for the
    query's kind until its background says otherwise (`streams.alerting.thresholds`)."""
    if q.auto_threshold:
        return prior_for(encoder.short_id, q.kind)
    return float(q.threshold)  # type: ignore[arg-type]


def scored_centered(q: StandingQuery, encoder: Encoder) -> bool:
    """Auto-threshold queries of an encoder and kind whose raw background is degenerate
    (`thresholds.CENTERED`, e.g. aisfx examples vs room noise) are scored centered."""
    return q.auto_threshold and needs_centering(encoder.short_id, q.kind)


def build_matrix(
    queries: Iterable[RegisteredQuery],
    encoder: Encoder,
    vectors: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[PatternMatrix, list[str]]:
    """Matrix of the enabled queries bound to this encoder; ids skipped for another model.

    `vectors` caches decoded pattern vectors by query id (decoded here when missing).
    """
    patterns, skipped = [], []
    for rq in queries:
        if not rq.query.enabled:
            continue
        if not bound_to(rq, encoder):
            skipped.append(rq.id)
            continue
        q = rq.query
        pos, neg = vectors[rq.id] if vectors and rq.id in vectors else decoded_vectors(rq)
        patterns.append(QueryPatterns(q.id, pos, neg, starting_threshold(q, encoder),
                                      q.negative_margin, tuple(q.sources),
                                      centered=scored_centered(q, encoder),
                                      hysteresis=q.hysteresis))
    return PatternMatrix(patterns, encoder.dim, encoder.device), skipped


class QueryRegistry:
    """Reads and writes the query topic; keeps the current queries and their matrices."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        encoders: dict[Modality, Encoder],
        run_encoder: RunEncoder,
        lookup: ItemLookup | None = None,
        metrics: Any | None = None,
        poll_ms: int = 100,
        client_kwargs: dict[str, Any] | None = None,
        layout: TopicLayout = TopicLayout(1),
    ) -> None:
        self._bootstrap = bootstrap
        self._layout = layout
        self._client_kwargs = dict(client_kwargs or {})
        self.topic = topic
        self._encoders = encoders
        self._run_encoder = run_encoder
        self._lookup = lookup
        self._metrics = metrics
        self._poll_ms = poll_ms
        self._queries: dict[str, RegisteredQuery] = {}
        self._vectors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._matrices: dict[Modality, PatternMatrix] = {}
        self._rules: dict[str, PolicyRule] = {}
        self._composites: dict[str, RegisteredComposite] = {}
        self._warned_stale: set[tuple[str, str, str]] = set()
        self._sites = SiteMap()
        self._positions: dict[int, int] = {}
        self._applied = asyncio.Condition()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Create the topic if needed, load every query, then keep following the topic."""
        await ensure_topic(
            self._bootstrap, self.topic, self._layout.single_partition(), self._client_kwargs,
            **{"cleanup.policy": "compact"}
        )
        try:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
                **self._client_kwargs,
            )
            await self._producer.start()
            self._consumer, ends = await assigned_consumer(
                self._bootstrap, self.topic, self._client_kwargs, auto_offset_reset="earliest")
            await self._consumer.seek_to_beginning(*ends)
        except KafkaError as e:
            raise RegistryError(
                f"cannot read query topic {self.topic} at {self._bootstrap}: {e}"
            ) from e
        # Catch up before the worker starts matching, so restarts never miss a query.
        while True:
            positions = [await self._position(tp) for tp in ends]
            if all(pos >= end for pos, end in zip(positions, ends.values(), strict=True)):
                break
            await self._poll_once(rebuild=False)
        await self._rebuild(set(self._encoders))
        log.info("query registry loaded %d queries from %s", len(self._queries), self.topic)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    @property
    def started(self) -> bool:
        return self._task is not None

    async def _position(self, tp: TopicPartition) -> int:
        assert self._consumer is not None
        return await self._consumer.position(tp)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    # --- reading ----------------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                await self._poll_once(rebuild=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following: a bad record must not stop the registry
                log.exception("query registry: failed to apply records from %s", self.topic)
                await asyncio.sleep(1.0)

    async def _poll_once(self, *, rebuild: bool) -> set[Modality]:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
        changed: set[Modality] = set()
        for tp, records in batches.items():
            for rec in records:
                changed |= self._apply(rec.key, rec.value, tp, rec.offset)
                self._positions[tp.partition] = rec.offset + 1
        if changed and rebuild:
            await self._rebuild(changed)
        if batches:
            async with self._applied:
                self._applied.notify_all()
        return changed

    def _apply(self, key: bytes | None, value: bytes | None, tp: Any, offset: int) -> set[Modality]:
        if not key:
            return set()
        query_id = key.decode()
        old = self._queries.get(query_id)
        touched = {old.query.modality} if old else set()
        self._composites.pop(query_id, None)
        if value is None:
            self._queries.pop(query_id, None)
            self._vectors.pop(query_id, None)
            if query_id == SITES_KEY:
                self._sites = SiteMap()
            return touched
        if query_id == SITES_KEY or value.startswith(b'{"composite"'):
            self._apply_other(query_id, value, tp, offset)
            return touched
        try:
            rq = RegisteredQuery.model_validate_json(value)
        except ValidationError as e:
            log.error("query topic %s[%d]@%d: unreadable query %s skipped: %s",
                      tp.topic, tp.partition, offset, query_id, e)
            return touched
        self._queries[query_id] = rq
        if old is None or old.positive_vectors_b64 != rq.positive_vectors_b64 \
                or old.negative_vectors_b64 != rq.negative_vectors_b64:
            self._vectors[query_id] = decoded_vectors(rq)
        return touched | {rq.query.modality}

    def _apply_other(self, key: str, value: bytes, tp: Any, offset: int) -> None:
        """The site map, or a composite query (records a plain query's parser refuses)."""
        try:
            if key == SITES_KEY:
                self._sites = SiteMap.model_validate_json(value)
            else:
                self._composites[key] = RegisteredComposite.model_validate_json(value)
                self._queries.pop(key, None)
        except ValidationError as e:
            log.error("query topic %s[%d]@%d: unreadable record %s skipped: %s",
                      tp.topic, tp.partition, offset, key, e)

    async def _rebuild(self, modalities: set[Modality]) -> None:
        """New matrices, built off the event loop (10k queries take a moment), then swapped."""
        for modality in modalities:
            encoder = self._encoders.get(modality)
            if encoder is None:
                continue
            queries = [q for q in self._queries.values() if q.query.modality == modality]
            matrix, skipped = await asyncio.to_thread(
                build_matrix, queries, encoder, dict(self._vectors))
            self._warn_stale(skipped, encoder)
            self._matrices[modality] = matrix
            if self._metrics is not None:
                self._metrics.standing_queries.labels(modality=modality.value).set(len(matrix))
        self._rules = {q.id: PolicyRule.of(q.query) for q in self._queries.values()}

    def _warn_stale(self, query_ids: list[str], encoder: Encoder) -> None:
        """One warning per stale query and model, not one per rebuild: every change to a
        modality's queries rebuilds its matrix and would repeat them all."""
        for query_id in query_ids:
            rq = self._queries[query_id]
            mark = (query_id, rq.model_id, encoder.model_id)
            if mark not in self._warned_stale:
                self._warned_stale.add(mark)
                log.warning("standing query %r is stale: %s", query_id,
                            stale_reason(rq, encoder))

    # --- views ------------------------------------------------------------------------
    def matrix(self, modality: Modality) -> PatternMatrix | None:
        return self._matrices.get(modality)

    @property
    def rules(self) -> dict[str, PolicyRule]:
        return self._rules

    def get(self, query_id: str) -> RegisteredQuery:
        try:
            return self._queries[query_id]
        except KeyError:
            raise QueryNotFound(f"no standing query with id {query_id!r}; "
                                "see `lookout query list`") from None

    def find(self, query_id: str) -> RegisteredQuery | None:
        return self._queries.get(query_id)

    def webhooks_of(self, query_id: str) -> list[Webhook]:
        """The webhooks of a query; none when it has none or is gone."""
        rq = self._queries.get(query_id)
        if rq is not None:
            return list(rq.query.webhooks)
        rc = self._composites.get(query_id)
        return list(rc.composite.webhooks) if rc is not None else []

    # --- composites and sites ---------------------------------------------------------
    @property
    def sites(self) -> SiteMap:
        return self._sites

    def composites(self) -> list[RegisteredComposite]:
        return sorted(self._composites.values(), key=lambda c: c.id)

    def find_composite(self, query_id: str) -> RegisteredComposite | None:
        return self._composites.get(query_id)

    def composites_of(self, member_id: str) -> list[CompositeQuery]:
        """The composites naming `member_id` as a member."""
        return [c.composite for c in self.composites() if member_id in c.composite.member_ids]

    def suppressed(self, query_id: str) -> bool:
        """Whether an enabled composite with `suppress_members` takes this query's alerts."""
        return any(c.enabled and c.suppress_members for c in self.composites_of(query_id))

    def describe(self, rq: RegisteredQuery) -> dict[str, Any]:
        """The query's summary plus `stale`: its model is not this worker's encoder, so
        the worker skips it until it is registered again (`lookout query apply` does);
        `stale_reason` says so, naming both models and the fix."""
        reason = stale_reason(rq, self._encoders.get(rq.query.modality))
        return {**rq.summary(), "stale": reason is not None, "stale_reason": reason}

    def all(self, modality: Modality | None = None) -> list[RegisteredQuery]:
        return sorted(
            (q for q in self._queries.values() if modality is None or q.query.modality == modality),
            key=lambda q: q.id,
        )

    def encoder(self, modality: Modality) -> Encoder:
        encoder = self._encoders.get(modality)
        if encoder is None:
            raise QueryValidationError(f"this worker has no {modality} encoder loaded")
        return encoder

    # --- writing ----------------------------------------------------------------------
    async def register(self, query: StandingQuery) -> RegisteredQuery:
        """Compute the pattern vectors and publish; returns once active on this worker."""
        require_secret_envs(query)
        encoder = self.encoder(query.modality)
        rq = await compute_pattern_vectors(query, encoder, self._run_encoder, self._lookup)
        old = self._queries.get(query.id)
        if old is not None:
            rq = rq.model_copy(update={"created_at": old.created_at})
        await self._publish(query.id, rq.model_dump_json().encode())
        return self._queries.get(query.id, rq)

    async def update_settings(self, query_id: str, changes: dict[str, Any]) -> RegisteredQuery:
        """Change fields that keep the vectors (threshold, sources, enabled, ...)."""
        current = self.get(query_id)
        if {"positives", "negatives", "modality", "id"} & set(changes):
            raise QueryValidationError(
                "PATCH cannot change id, modality, positives or negatives; "
                "POST the whole query again to change its examples"
            )
        body = {**current.query.model_dump(mode="json"), **changes}
        query = parse_query(body)
        require_secret_envs(query)
        rq = current.model_copy(
            update={"query": query, "fingerprint": query.fingerprint(), "updated_at": time.time()}
        )
        await self._publish(query_id, rq.model_dump_json().encode())
        return self._queries.get(query_id, rq)

    async def add_example(self, query_id: str, item_key: str, vector: np.ndarray, *,
                          positive: bool) -> RegisteredQuery:
        """Append an indexed item's stored vector to a query's positives or negatives
        (feedback: no re-encoding, the other examples' vectors are kept as they are)."""
        current = self.get(query_id)
        q = current.query
        role = "positives" if positive else "negatives"
        if any(e.item_key == item_key for e in getattr(q, role)):
            return current  # already learned (a repeated verdict)
        if vector.shape[-1] != current.dim:
            raise QueryValidationError(
                f"item {item_key} has a {vector.shape[-1]}-d vector; query {query_id!r} "
                f"holds {current.dim}-d vectors")
        row = torch.nn.functional.normalize(
            torch.as_tensor(np.asarray(vector, np.float32)).reshape(1, -1), dim=1)
        pos, neg = decoded_vectors(current)
        query = q.model_copy(update={role: [*getattr(q, role),
                                           PatternExample(item_key=item_key)]})
        rq = current.model_copy(update={
            "query": query, "fingerprint": query.fingerprint(), "updated_at": time.time(),
            "positive_vectors_b64": vectors_to_b64(torch.cat([pos, row]) if positive else pos),
            "negative_vectors_b64": vectors_to_b64(neg if positive else torch.cat([neg, row])),
        })
        await self._publish(query_id, rq.model_dump_json().encode())
        return self._queries.get(query_id, rq)

    async def register_composite(self, composite: CompositeQuery) -> RegisteredComposite:
        """Check the members (registered plain queries), then publish; returns once active
        on this worker."""
        require_secret_envs(composite)
        if composite.id in self._queries:
            raise QueryValidationError(
                f"{composite.id!r} is a plain standing query; give the composite another id")
        check_members(composite, set(self._queries), set(self._composites))
        old = self._composites.get(composite.id)
        rc = RegisteredComposite(composite=composite, fingerprint=composite.fingerprint())
        if old is not None:
            rc = rc.model_copy(update={"created_at": old.created_at})
        await self._publish(composite.id, rc.model_dump_json().encode())
        return self._composites.get(composite.id, rc)

    async def put_sites(self, sites: SiteMap) -> SiteMap:
        """Replace the site map on every worker (one record on the query topic)."""
        await self._publish(SITES_KEY, sites.model_dump_json().encode())
        return self._sites

    async def remove(self, query_id: str) -> None:
        """Delete a query or composite; a query that composites name is refused."""
        if query_id not in self._composites:
            self.get(query_id)
            users = [c.id for c in self.composites_of(query_id)]
            if users:
                raise QueryValidationError(
                    f"query {query_id!r} is a member of composite queries {users}; remove "
                    "it from them (or remove them) first")
        await self._publish(query_id, None)

    async def _publish(self, query_id: str, value: bytes | None) -> None:
        check_record_size(query_id, value)
        if self._producer is None:
            raise RegistryError("query registry is not started")
        try:
            meta = await self._producer.send_and_wait(self.topic, key=query_id.encode(),
                                                      value=value)
        except KafkaError as e:
            raise RegistryError(f"cannot write query {query_id} to {self.topic}: {e}") from e
        await self.wait_applied(meta.partition, meta.offset)

    async def catch_up(self, timeout_s: float = 5.0) -> bool:
        """Wait until every query record written so far is applied on this worker; False
        when that takes longer than `timeout_s` or the topic cannot be read.

        Compares the consumer's position, not the last record seen: on a compacted topic
        the end offset can lie past the last record that survives. Records are applied
        in the same step that moves the position, so position >= end means applied."""
        if self._consumer is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
            while True:
                positions = [await self._position(tp) for tp in ends]
                if all(pos >= end for pos, end in zip(positions, ends.values(), strict=True)):
                    return True
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.05)
        except KafkaError:
            return False

    async def wait_applied(self, partition: int, offset: int, timeout_s: float = 10.0) -> None:
        """Block until this worker's follower has applied the record at `offset`."""
        async with self._applied:
            await asyncio.wait_for(
                self._applied.wait_for(lambda: self._positions.get(partition, 0) > offset),
                timeout_s,
            )
