"""Plugs standing queries, alerts and search into a worker: `install(ctx)`.

Registers the batch observer (match -> policy -> alert -> sinks: Kafka topic, Redis
history, live feed), the start-up/shutdown hooks of the query registry, the
alert-topic follower and the webhook dispatcher, and the HTTP routes of `/queries`,
`/search`, `/alerts` and `/items`. `app.install_extensions(ctx)` calls it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from streams.alert_feed import AlertFeed, AlertTopicFollower
from streams.alert_policy import AlertPolicy, Candidate, PolicyStateStore
from streams.alerts import Alert, AlertStore, alert_on_topic
from streams.kafka_security import aiokafka_kwargs
from streams.query_registry import QueryRegistry
from streams.settings import Modality
from streams.webhook_dispatch import WebhookDispatcher, webhook_group
from streams.webhooks import WebhookSender

if TYPE_CHECKING:
    from streams.app import WorkerContext
    from streams.batch_processing import IndexedItem

log = logging.getLogger(__name__)

LOADING_QUERIES = "standing queries are still loading from the query topic"


@dataclass
class AlertingService:
    """Everything the observer and the routes share on one worker."""

    ctx: Any
    registry: QueryRegistry
    alerts: AlertStore
    policy_states: PolicyStateStore
    webhooks: WebhookSender
    feed: AlertFeed
    follower: AlertTopicFollower

    @property
    def alerts_topic(self) -> str:
        return self.ctx.settings.topic("alerts")

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await self.ctx.producer.send(topic, key, value, [("content-type", b"application/json")])

    async def lookup_item(self, modality: Modality, key: str) -> Any:
        store = self.ctx.index_stores.get(modality)
        return await store.get(key) if store is not None else None


class AlertingObserver:
    """The `BatchObserver` that turns matches of a batch into alerts."""

    def __init__(self, service: AlertingService) -> None:
        self.s = service

    async def on_batch(
        self, modality: Modality, items: list[IndexedItem], vectors: torch.Tensor
    ) -> None:
        matrix = self.s.registry.matrix(modality)
        if matrix is None or len(matrix) == 0 or not items:
            return
        metrics = self.s.ctx.metrics
        started = time.perf_counter()
        rows = torch.tensor([it.row for it in items], device=vectors.device)
        matches = matrix.match(vectors.index_select(0, rows), [it.record.source for it in items])
        metrics.stage_seconds.labels(modality=modality.value, stage="match").observe(
            time.perf_counter() - started)
        if not matches:
            return
        by_key = {it.key: it for it in items}
        scores: dict[tuple[str, str], float] = {}
        candidates = []
        for m in matches:
            item = items[m.row]
            metrics.match_scores.labels(query_id=m.query_id).observe(m.score)
            scores[(m.query_id, item.key)] = m.score
            candidates.append(Candidate(m.query_id, item.record.source, item.record.ts_ms,
                                        item.key))
        await self.raise_alerts(modality, candidates, scores, by_key)

    async def raise_alerts(
        self,
        modality: Modality,
        candidates: list[Candidate],
        scores: dict[tuple[str, str], float],
        items: dict[str, IndexedItem],
    ) -> list[Alert]:
        """Policy (state from Redis), then publish each firing alert once, then its sinks."""
        started = time.perf_counter()
        policy = AlertPolicy(self.s.registry.rules)
        states = await self.s.policy_states.load((c.query_id, c.source) for c in candidates)
        fired, dirty = policy.evaluate(candidates, states)
        # State first: a crash after this re-decides "fire" for the same item (same alert_id).
        await self.s.policy_states.save(states, dirty)
        raised = []
        for cand in fired:
            rq = self.s.registry.find(cand.query_id)
            if rq is None:
                continue
            q = rq.query
            item = items[cand.item_key]
            alert = Alert.build(
                query_id=q.id, item_key=cand.item_key, query_name=q.name,
                modality=modality.value, source=cand.source, ts=cand.ts_ms,
                score=round(scores[(q.id, cand.item_key)], 6), threshold=q.threshold,
                severity=q.severity, labels=q.labels, evidence=dict(item.evidence),
            )
            published = await self.s.alerts.publish_once(alert, self.s.alerts_topic, self.s.send)
            if published:
                m = self.s.ctx.metrics
                m.alerts.labels(query_id=q.id, severity=q.severity.value).inc()
                m.ingest_to_alert_seconds.labels(modality=modality.value).observe(
                    max(0.0, time.time() - cand.ts_ms / 1000))
                raised.append(alert)
        self.s.ctx.metrics.stage_seconds.labels(modality=modality.value, stage="alert").observe(
            time.perf_counter() - started)
        return raised


def install(ctx: WorkerContext) -> AlertingService:
    """Register the observer, hooks and routes of the alerting side on a worker context."""
    from streams.api import alerts as alerts_api
    from streams.api import items as items_api
    from streams.api import queries as queries_api
    from streams.api import search as search_api

    settings = ctx.settings
    bootstrap = ctx.services.kafka_bootstrap
    kafka_kw = aiokafka_kwargs(settings)
    feed = AlertFeed()
    service = AlertingService(
        ctx=ctx,
        registry=None,  # type: ignore[arg-type]  # set just below (needs the lookup)
        alerts=AlertStore(
            ctx.redis, settings.topic_prefix, settings.retention_s,
            verify_sent=lambda topic, alert_id, since_ms: alert_on_topic(
                bootstrap, topic, alert_id, since_ms, kafka_kw),
        ),
        policy_states=PolicyStateStore(ctx.redis, settings.topic_prefix, settings.retention_s),
        webhooks=WebhookSender(ctx.redis, settings.topic_prefix, ctx.metrics),
        feed=feed,
        follower=AlertTopicFollower(bootstrap, settings.topic("alerts"), settings.partitions,
                                    feed, kafka_kw),
    )
    service.registry = QueryRegistry(
        bootstrap=bootstrap, topic=settings.topic("queries"), encoders=ctx.encoders,
        run_encoder=ctx.run_encoder, lookup=service.lookup_item, metrics=ctx.metrics,
        client_kwargs=kafka_kw,
    )

    dispatcher = WebhookDispatcher(
        bootstrap, settings.topic("alerts"), webhook_group(settings.worker_id),
        service.registry, service.webhooks, settings.webhook_max_age_s, kafka_kw,
        metrics=ctx.metrics,
    )

    ctx.readiness.problems.append(LOADING_QUERIES)

    async def start() -> None:
        await service.registry.start()
        await service.follower.start()  # creates the alerts topic the dispatcher reads
        await service.webhooks.start()
        await dispatcher.start()
        if LOADING_QUERIES in ctx.readiness.problems:
            ctx.readiness.problems.remove(LOADING_QUERIES)

    async def stop() -> None:
        await dispatcher.stop()
        await service.follower.stop()
        await service.registry.stop()
        await service.webhooks.close()

    ctx.startup_hooks.append(start)
    ctx.shutdown_hooks.append(stop)
    ctx.observers.append(AlertingObserver(service))
    for module in (queries_api, search_api, alerts_api, items_api):
        ctx.web_routes.append(lambda app, m=module: m.install(app, service))
        ctx.route_specs.extend(module.ROUTES)
    return service
