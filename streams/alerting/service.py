"""The alerting stage of a worker: standing queries, the batch observer, alert sinks.

`build_alerting(...)` wires the query registry, the observer (match -> policy -> alert ->
sinks: Kafka topic, Redis history, live feed), the alert-topic follower and the webhook
dispatcher from explicit dependencies; the worker calls `start()` and `stop()` and adds
`AlertingObserver(service)` to its batch pipeline.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from redis.asyncio import Redis

from encoders.base import Encoder
from encoders.modality import Modality
from streams.alerting.alerts import Alert, AlertClaimBusy, AlertStore, alert_on_topic
from streams.alerting.composite import MemberHit
from streams.alerting.dispatch import WebhookDispatcher, webhook_group
from streams.alerting.egress import EgressPolicy
from streams.alerting.feed import AlertFeed, AlertTopicFollower
from streams.alerting.feedback import FeedbackStore
from streams.alerting.fusion import CompositeStage, HitSource, hit_floors, member_hits
from streams.alerting.incarnations import TopicIncarnations
from streams.alerting.incidents import IncidentAction
from streams.alerting.policy import AlertPolicy, Candidate, PolicyStateConflict, PolicyStateStore
from streams.alerting.thresholds import MAX_FUTURE_SKEW_MS, ThresholdKeeper, center_space
from streams.alerting.webhooks import WebhookSender
from streams.config.kafka_security import aiokafka_kwargs, kafka_python_kwargs
from streams.config.settings import Settings
from streams.core.inference import InferencePool
from streams.core.metrics import Metrics
from streams.core.periodic import start_task, stop_task
from streams.index.store import IndexStore, StoredItem
from streams.ingest.deadletter import RecordSender
from streams.ingest.records import IndexedItem
from streams.kafka.admin import TopicIds, TopicSetupError, topic_layout
from streams.queries.matching import Match, PatternMatrix
from streams.queries.registry import QueryRegistry

log = logging.getLogger(__name__)

LOADING_QUERIES = "standing queries are still loading from the query topic"


@dataclass
class AlertingService:
    """Everything the observer and the routes share on one worker."""

    registry: QueryRegistry
    alerts: AlertStore
    policy_states: PolicyStateStore
    webhooks: WebhookSender
    feed: AlertFeed
    follower: AlertTopicFollower
    dispatcher: WebhookDispatcher
    sender: RecordSender
    metrics: Metrics
    alerts_topic: str
    index_stores: Mapping[Modality, IndexStore]
    inference: InferencePool
    thresholds: ThresholdKeeper
    feedback: FeedbackStore
    incarnations: TopicIncarnations
    topic_ids: TopicIds  # what `incarnations` fetches with: connected at start, closed at stop
    _connecting: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await self.sender.send(topic, key, value, [("content-type", b"application/json")])

    async def lookup_item(self, modality: Modality, key: str) -> StoredItem | None:
        return await lookup_item(self.index_stores, modality, key)

    async def start(self) -> None:
        """The standing queries (the observer needs them) and the alert-topic follower side
        by side: each is a few Kafka round trips and neither needs the other, so a worker
        is ready sooner. Then the webhooks and their dispatcher, which reads the alerts
        topic the follower creates and looks webhooks up in the registry."""
        starts = [asyncio.ensure_future(self._start_queries()),
                  asyncio.ensure_future(self.follower.start())]
        try:
            await asyncio.gather(*starts)
        except BaseException:  # one failed (or we are cancelled): stop the other, re-raise
            for task in starts:
                task.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
            raise
        await self.webhooks.start()
        await self.dispatcher.start()

    def connect_in_background(self) -> None:
        """Open the topic-id client now, beside the first batches: the first matching batch
        then looks its topic's id up in one round trip instead of ~350 ms of importing and
        connecting on a busy worker. Called once the worker is ready, so start-up does not
        pay it (a failure here only means the first alert connects itself)."""
        self._connecting = start_task(self._connecting, self._connect_topic_ids,
                                      "topic-id-connect")

    async def _connect_topic_ids(self) -> None:
        try:
            await self.topic_ids.connect()
        except TopicSetupError as e:
            log.warning("%s; the first alert will connect again", e)

    async def _start_queries(self) -> None:
        await self.registry.start()
        await self.thresholds.refresh()  # auto thresholds as Redis has them, before batches
        self.thresholds.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.thresholds.stop()
        await self.follower.stop()
        await self.registry.stop()
        await self.webhooks.close()
        await stop_task(self._connecting)
        await asyncio.to_thread(self.topic_ids.close)


def score_batch(matrix: PatternMatrix, batch: torch.Tensor, sources: list[str],
                floors: dict[str, float] | None = None
                ) -> tuple[torch.Tensor, list[Match], list[Match]]:
    """Scores of `batch` against every query ([B, Q] best positive, on the host), the
    matches, and the composite member hits (scores at or above `floors`, negatives and
    sources as for matches); pure tensor work, run in an inference lane."""
    with torch.inference_mode():
        best, negative = matrix.scores(batch, sources)
        matches = matrix.select(best, negative, sources, with_hysteresis=True)
        hits = matrix.select(best, negative, sources, floors=floors) if floors else []
        return best.cpu(), matches, hits


class AlertingObserver:
    """The `BatchObserver` that turns matches of a batch into alerts.

    `transient`: another worker holding an alert's claim, or saving the same incident
    states, is contention that passes, so the pipeline waits it out like a Redis outage
    (giving up would lose the alert); any other error is a bug, retried a few times.
    """

    stage = "alert"
    transient: tuple[type[BaseException], ...] = (AlertClaimBusy, PolicyStateConflict)

    def __init__(self, service: AlertingService) -> None:
        self.s = service
        self.fusion = CompositeStage(service.registry, service.policy_states,
                                     self._publish_composite, service.alerts.update_incident)

    async def on_batch(
        self, modality: Modality, items: list[IndexedItem], vectors: torch.Tensor
    ) -> None:
        matrix = self.s.registry.matrix(modality)
        if matrix is None or len(matrix) == 0 or not items:
            return
        started = time.perf_counter()
        rows = torch.tensor([it.row for it in items], device=vectors.device)
        sources = [it.record.source for it in items]
        batch = vectors.index_select(0, rows)
        space = center_space(modality, self.s.registry.encoder(modality))
        if matrix.has_centered:  # only modalities with centered queries need source means
            self.s.thresholds.observe_vectors(space, batch, sources)
        self.s.thresholds.apply(matrix, space)
        # Scoring runs where the encoder runs (an inference lane): on CUDA its
        # device->host copy would otherwise wait for the encoder's kernels on the event loop.
        floors = hit_floors(self.s.registry, self._threshold_of, matrix.query_ids)
        best, matches, hits = await self.s.inference.run(score_batch, matrix, batch, sources,
                                                         floors)
        self.s.thresholds.observe(matrix, best, sources, [it.record.ts_ms for it in items])
        self.s.metrics.stage_seconds.labels(modality=modality.value, stage="match").observe(
            time.perf_counter() - started)
        if not matches and not hits:
            return
        incarnation = await self._incarnations([items[m.row] for m in [*matches, *hits]])
        candidates = []
        for m in matches:
            item = items[m.row]
            self.s.metrics.match_scores.labels(query_id=m.query_id).observe(m.score)
            if _too_far_ahead(item):
                continue  # a clock far ahead would hold the pair's incidents back for days
            candidates.append(Candidate(m.query_id, item.record.source, item.record.ts_ms,
                                        item.key, m.score, incarnation[item.record.topic]))
        await self.raise_alerts(modality, candidates, {it.key: it for it in items})
        await self._fuse(modality, items, hits, incarnation)

    async def _fuse(self, modality: Modality, items: list[IndexedItem], hits: list[Match],
                    incarnation: dict[str, str]) -> None:
        """Composite queries: this batch's member hits, judged with the other workers'."""
        found = []
        for m in hits:
            item = items[m.row]
            if _too_far_ahead(item):
                continue
            cand = Candidate(m.query_id, item.record.source, item.record.ts_ms, item.key,
                             m.score, incarnation[item.record.topic])
            found.append((m, HitSource(cand.uid, item.key, cand.source, modality.value,
                                       cand.ts_ms, dict(item.evidence))))
        grouped = member_hits(self.s.registry, self._threshold_of, found)
        if modality == Modality.AUDIO:
            grouped = await self._with_clips(grouped, {it.key: it for it in items})
        await self.fusion.run(grouped)

    async def _with_clips(self, grouped: list[tuple[str, str, MemberHit]],
                          items: dict[str, IndexedItem]) -> list[tuple[str, str, MemberHit]]:
        """Audio member hits keep their chunk, so a composite alert can play it."""
        store = self.s.index_stores.get(Modality.AUDIO)
        kept: dict[str, bool] = {}
        out = []
        for composite_id, group, h in grouped:
            if store is not None and h.item_key not in kept:
                it = items[h.item_key]
                kept[h.item_key] = await store.keep_clip(it.key, it.record.payload,
                                                         it.record.content_type)
            if kept.get(h.item_key):
                h = replace(h, evidence={**h.evidence, "audio_url": f"/items/{h.item_key}/audio"})
            out.append((composite_id, group, h))
        return out

    async def _incarnations(self, matched: list[IndexedItem]) -> dict[str, str]:
        """Topic id of each topic the matched items came from (alert ids must not repeat
        when a topic is recreated and its offsets start again)."""
        offsets: dict[tuple[str, int], list[int]] = {}
        for it in matched:
            offsets.setdefault((it.record.topic, it.record.partition), []).append(
                it.record.offset)
        return {topic: await self.s.incarnations.of(topic, partition, offs)
                for (topic, partition), offs in offsets.items()}

    async def raise_alerts(self, modality: Modality, candidates: list[Candidate],
                           items: dict[str, IndexedItem]) -> list[Alert]:
        """Incidents (state from Redis), then publish each new one's alert once."""
        started = time.perf_counter()
        policy = AlertPolicy(self.s.registry.rules, self._threshold_of)
        # State first (compare-and-set; decided again if another worker saved meanwhile):
        # a crash after this redelivers the batch, and the confirming item re-issues its
        # alert (same alert_id), which publish_once then completes.
        decisions = await self.s.policy_states.update(
            {(c.query_id, c.source) for c in candidates},
            lambda states: policy.evaluate(candidates, states))
        raised = []
        for d in decisions:
            if d.action.kind == "open":
                if self.s.registry.suppressed(d.candidate.query_id):
                    continue  # a composite pages for it (suppress_members)
                item = items[d.candidate.item_key]
                alert = self._alert(modality, d.candidate, d.action, item)
                if alert is not None and modality == Modality.AUDIO:
                    alert = await self._with_clip(alert, item)
                if alert is not None and await self._publish(modality, alert):
                    raised.append(alert)
            elif d.action.kind == "close":
                await self.s.alerts.update_incident(
                    d.action.alert_id, end=int(round((d.action.end_t or 0) * 1000)),
                    peak=round(d.action.score, 6))
            else:  # merge: late items joined two incidents; the later one lives on in `into`
                await self.s.alerts.update_incident(d.action.alert_id,
                                                    merged_into=d.action.into)
        self.s.metrics.stage_seconds.labels(modality=modality.value, stage="alert").observe(
            time.perf_counter() - started)
        return raised

    async def _with_clip(self, alert: Alert, item: IndexedItem) -> Alert:
        """Keep the matched chunk with its item so that people can listen to it
        (`GET /items/{key}/audio`); the alert's evidence says where."""
        store = self.s.index_stores.get(Modality.AUDIO)
        if store is None or not await store.keep_clip(item.key, item.record.payload,
                                                      item.record.content_type):
            return alert
        evidence = {**alert.evidence, "audio_url": f"/items/{item.key}/audio"}
        return alert.model_copy(update={"evidence": evidence})

    def _threshold_of(self, query_id: str) -> float:
        rq = self.s.registry.find(query_id)
        return self.s.thresholds.threshold_of(rq) if rq is not None else 1.0

    def _alert(self, modality: Modality, cand: Candidate, action: IncidentAction,
               item: IndexedItem) -> Alert | None:
        rq = self.s.registry.find(cand.query_id)
        if rq is None:
            return None
        q = rq.query
        return Alert.build(
            alert_id=action.alert_id, query_id=q.id, item_key=cand.item_key, query_name=q.name,
            modality=modality.value, source=cand.source, site=self._site(cand.source),
            ts=cand.ts_ms,
            score=round(cand.score, 6), threshold=round(self.s.thresholds.threshold_of(rq), 6),
            severity=q.severity, labels=q.labels, evidence=dict(item.evidence),
            incident={"start": int(round((action.start_t or cand.ts_ms / 1000) * 1000)),
                      "end": None, "peak": round(cand.score, 6)},
        )

    def _site(self, source: str) -> str | None:
        site = self.s.registry.sites.site_of(source)
        return site.name if site is not None else None

    async def _publish_composite(self, alert: Alert) -> bool:
        """Composite alerts count with the others; their latency is from the last member."""
        published = await self.s.alerts.publish_once(alert, self.s.alerts_topic, self.s.send)
        if published:
            self.s.metrics.alerts.labels(query_id=alert.query_id,
                                         severity=alert.severity.value).inc()
        return published

    async def _publish(self, modality: Modality, alert: Alert) -> bool:
        published = await self.s.alerts.publish_once(alert, self.s.alerts_topic, self.s.send)
        if published:
            m = self.s.metrics
            m.alerts.labels(query_id=alert.query_id, severity=alert.severity.value).inc()
            m.ingest_to_alert_seconds.labels(modality=modality.value).observe(
                max(0.0, time.time() - alert.ts / 1000))
        return published


def build_alerting(
    settings: Settings,
    *,
    bootstrap: str,
    redis: Redis,
    metrics: Metrics,
    encoders: Mapping[Modality, Encoder],
    index_stores: Mapping[Modality, IndexStore],
    inference: InferencePool,
    sender: RecordSender,
) -> AlertingService:
    """The alerting stage of one worker, from explicit parts; connects to nothing yet."""
    kafka_kw = aiokafka_kwargs(settings)
    prefix, retention = settings.topic_prefix, settings.retention_s
    alerts_topic = settings.topic("alerts")
    feed = AlertFeed()
    ids = TopicIds(bootstrap, kafka_python_kwargs(settings))
    lookup = functools.partial(lookup_item, index_stores)
    registry = QueryRegistry(
        bootstrap=bootstrap, topic=settings.topic("queries"), encoders=encoders,
        run_encoder=inference.run, lookup=lookup, metrics=metrics, client_kwargs=kafka_kw,
        layout=topic_layout(settings),
    )
    webhooks = WebhookSender(redis, prefix, metrics,
                             egress=EgressPolicy.parse(settings.webhook_allow_networks))
    alerts = AlertStore(
        redis, prefix, retention,
        verify_sent=lambda topic, alert_id, since_ms: alert_on_topic(
            bootstrap, topic, alert_id, since_ms, kafka_kw),
    )
    return AlertingService(
        registry=registry,
        alerts=alerts,
        policy_states=PolicyStateStore(redis, prefix, retention),
        webhooks=webhooks,
        feed=feed,
        follower=AlertTopicFollower(bootstrap, alerts_topic, topic_layout(settings), feed,
                                    kafka_kw),
        dispatcher=WebhookDispatcher(
            bootstrap, alerts_topic, webhook_group(settings.worker_id), registry, webhooks,
            settings.webhook_max_age_s, kafka_kw, metrics=metrics,
        ),
        sender=sender, metrics=metrics, alerts_topic=alerts_topic,
        index_stores=index_stores, inference=inference,
        thresholds=ThresholdKeeper(redis, prefix, registry, metrics),
        feedback=FeedbackStore(redis, prefix, alerts, registry, metrics),
        incarnations=TopicIncarnations(ids),
        topic_ids=ids,
    )


def _too_far_ahead(item: IndexedItem) -> bool:
    return item.record.ts_ms > time.time() * 1000 + MAX_FUTURE_SKEW_MS


def _too_far_ahead(item: IndexedItem) -> bool:
    return item.record.ts_ms > time.time() * 1000 + MAX_FUTURE_SKEW_MS


async def lookup_item(
    index_stores: Mapping[Modality, IndexStore], modality: Modality, key: str
) -> StoredItem | None:
    """An indexed item by key (None when this worker has no such index or it expired)."""
    store = index_stores.get(modality)
    return await store.get(key) if store is not None else None
