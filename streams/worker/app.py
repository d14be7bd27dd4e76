"""Composition root of the worker: the Faust app and the stages it runs, wired explicitly.

`create_app(settings)` builds, from typed parts and without connecting to anything:

    ingest     BatchPipeline (parse -> decode -> encode -> upsert) behind one agent per topic
    alerting   AlertingService (queries, observer, alert feed, webhooks), an observer of it
    web        the HTTP API registered through Faust's own routing (`streams.worker.web`)
    lag        the consumer-lag / GPU-memory gauges

`Worker.start()` loads the encoders (unless given), ensures the indexes and starts the
stages in that order; `Worker.stop()` undoes it. It runs from the app's first start, beside
the consumer group join rather than after it (start-up, issue 18 item 6). For Faust's own
CLI the module also exposes a lazy `app` built from the environment.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.tables import TableManager
from redis.asyncio import Redis

from encoders.base import Encoder
from encoders.modality import MODALITIES, Modality
from streams.alerting.service import (
    LOADING_QUERIES,
    AlertingObserver,
    AlertingService,
    build_alerting,
)
from streams.api import auth
from streams.api.errors import error_middleware
from streams.api.health import Readiness
from streams.api.status import WorkerDirectory
from streams.config.kafka_security import aiokafka_kwargs, faust_broker_credentials
from streams.config.settings import Settings
from streams.core.heap import freeze_startup_heap
from streams.core.inference import InferencePool
from streams.core.metrics import Metrics
from streams.core.retry import retry_until_done
from streams.core.wire import MAX_PAYLOAD_BYTES
from streams.embedded import Services, resolve_services
from streams.index.params import VectorIndexParams
from streams.index.store import IndexStore
from streams.index.vector_cache import RedisVectorCache
from streams.ingest.agents import register_agents
from streams.ingest.deadletter import DeadLetterSink
from streams.ingest.pipeline import BatchPipeline
from streams.kafka.admin import ensure_topics, topic_layout
from streams.worker.encoders import (
    inference_pool,
    load_missing_encoders,
    share_log_caches,
    template_caches,
)
from streams.worker.heartbeat import Heartbeat, instance_id
from streams.worker.lag import FaustOffsets, LagMonitor
from streams.worker.probes import DependencyProbe, KafkaMetadataCheck
from streams.worker.startup import StartupClock
from streams.worker.web import APPLICATION_OPTIONS, api_routes, register_routes

log = logging.getLogger(__name__)

SESSION_TIMEOUT_S = 10.0
HEARTBEAT_S = 3.0


class FaustRecordSender:
    """Sends one record through the app's own Kafka producer and waits for the broker."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        await self.app.producer.send_and_wait(
            topic, key, value, partition=None, timestamp=None, headers=headers
        )


@dataclass
class Worker:
    """The stages of one worker and their start/stop order; every field is typed."""

    settings: Settings
    services: Services
    metrics: Metrics
    redis: Redis
    inference: InferencePool
    readiness: Readiness
    pipeline: BatchPipeline
    alerting: AlertingService
    lag: LagMonitor
    probe: DependencyProbe
    heartbeat: Heartbeat
    startup: StartupClock
    encoders: dict[Modality, Encoder] = field(default_factory=dict)
    index_stores: dict[Modality, IndexStore] = field(default_factory=dict)
    vector_caches: list[RedisVectorCache] = field(default_factory=list)

    async def start(self) -> None:
        """Encoders, then one index per modality, then alerting; then batches may flow."""
        s = self.settings
        clock = self.startup
        self.probe.start()
        if not self.readiness.encoders_loaded:
            await self.inference.run(
                load_missing_encoders, s, self.encoders,
                took=lambda m, seconds: clock.record(f"encoder_{m.value}", seconds))
            self.readiness.encoders_loaded = True
        self.vector_caches = share_log_caches(s, self.services.redis_url, self.encoders)
        self.metrics.watch_template_caches(
            {m.value: cache for m, cache in template_caches(self.encoders).items()})
        step = time.monotonic()
        for m, enc in self.encoders.items():
            self.metrics.encoder_info.labels(
                modality=m.value, model=enc.short_id, device=str(enc.device)).set(1)
            store = self.index_stores.setdefault(m, IndexStore(
                self.redis, prefix=s.topic_prefix, modality=m, model_short_id=enc.short_id,
                dims=enc.dim, datatype=s.vector_dtype, ttl_s=s.retention_s,
                params=VectorIndexParams.from_settings(s),
            ))
            await retry_until_done(store.ensure, op="ensure", what=f"creating index {store.name}",
                                   metrics=self.metrics)
        self.readiness.indexes_ensured = True
        clock.timed("indexes", step)
        step = time.monotonic()
        await self.alerting.start()
        clock.timed("queries", step)
        step = time.monotonic()
        freeze_startup_heap()
        clock.timed("gc_freeze", step)
        self._ready(LOADING_QUERIES)
        self.lag.devices = tuple(sorted({str(e.device) for e in self.encoders.values()}))
        self.lag.start()
        self.heartbeat.encoders = {m.value: f"{e.short_id}@{e.device}"
                                   for m, e in self.encoders.items()}
        self.heartbeat.start()
        self.metrics.worker_up.set(1)
        self.pipeline.ready.set()
        self.alerting.connect_in_background()
        log.info("worker %s started: %s", s.worker_id,
                 ", ".join(f"{m.value}={e.short_id}@{e.device}" for m, e in self.encoders.items()))
        clock.check_ready()

    def _ready(self, problem: str) -> None:
        if problem in self.readiness.problems:
            self.readiness.problems.remove(problem)

    async def stop(self) -> None:
        """Stop the stages in reverse, then close Redis and the inference lanes."""
        self.metrics.worker_up.set(0)
        await self.heartbeat.stop()
        await self.lag.stop()
        await self.probe.stop()
        await self.alerting.stop()
        try:
            await self.redis.aclose()
        except Exception as e:  # closing a dead connection is not worth a traceback
            log.info("closing Redis client: %s", e)
        self.inference.shutdown()
        for cache in self.vector_caches:
            cache.close()


class NoTablesManager(TableManager):
    """Faust's table manager without the fixed second it sleeps at start (time for tables
    defined late to register before the consumer subscribes) when there are no tables.
    Lookout defines none (`store="memory://"`, no `app.Table`), and that second delayed
    every worker's first assignment, and so its readiness."""

    async def on_start(self) -> None:
        if self:  # tables after all: keep Faust's wait for late ones
            await super().on_start()
        elif not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class LookoutApp(faust.App):
    """A Faust app that carries its `Worker` and serves Lookout's HTTP API."""

    worker: Worker

    async def on_first_start(self) -> None:
        """Start the worker's stages, then create the input and dead-letter topics before
        the consumer subscribes to them.

        The stages (encoders, indexes, standing queries) start now, concurrently with the
        consumer group join, not as a Faust task, which would wait for the first
        assignment; batches still wait for them (`pipeline.ready`), and so does readiness.
        A failure crashes the app, as a failing Faust task does."""
        self.worker.startup.app_started()  # the consumer group join starts now
        self.add_future(self.worker.start())
        await super().on_first_start()
        s = self.worker.settings
        topics = [s.input_topic(m) for m in MODALITIES] + [s.topic("deadletter")]
        layout = topic_layout(s)
        created = await ensure_topics(self.worker.services.kafka_bootstrap, topics, layout,
                                      aiokafka_kwargs(s))
        if created:
            log.info("created topics %s with %d partitions, replication %d",
                     ", ".join(created), layout.partitions, layout.replication)

    def on_webserver_init(self, web_server: Any) -> None:
        """Error and auth middleware wrap every route (Faust has no middleware API)."""
        super().on_webserver_init(web_server)
        s = self.worker.settings
        web_server.web_app.middlewares.append(error_middleware)
        web_server.web_app.on_shutdown.append(self._end_streams)
        token = auth.required_token(s.web_host, s.api_token)
        if token:
            web_server.web_app.middlewares.append(auth.bearer_token_middleware(token))

    async def _end_streams(self, _web_app: Any) -> None:
        """aiohttp's shutdown hook, run before it waits for open requests: end the live
        alert streams, which would otherwise keep the worker from stopping."""
        self.worker.alerting.feed.close()

    async def on_stop(self) -> None:
        self.worker.readiness.stopping = True
        await super().on_stop()
        await self.worker.stop()


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def _faust_app(settings: Settings, services: Services) -> LookoutApp:
    return LookoutApp(
        settings.worker_id,
        broker=_broker_urls(services.kafka_bootstrap),
        broker_credentials=faust_broker_credentials(settings),
        # A dead letter carries at most MAX_PAYLOAD_BYTES of value plus bounded key and
        # headers (streams.ingest.deadletter.fit_for_kafka): always sendable.
        producer_max_request_size=MAX_PAYLOAD_BYTES + 512 * 1024,
        store="memory://",
        # Faust's own data (worker state files) under LOOKOUT_HOME, not the current directory
        datadir=str(settings.home.absolute() / "workers" / "{conf.name}-data"),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_S,
        stream_wait_empty=True,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        web_application_options=APPLICATION_OPTIONS,
        TableManager=NoTablesManager,
    )


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    metrics: Metrics | None = None,
    encoders: dict[Modality, Encoder] | None = None,
    startup: StartupClock | None = None,
) -> LookoutApp:
    """Build the worker's Faust app, its stages and routes; connects to nothing yet.
    `startup` carries the phases measured before (`lookout worker`'s preflight and
    encoder loading) into the worker's metrics."""
    services = services or resolve_services(settings)
    metrics = metrics or Metrics()
    app = _faust_app(settings, services)
    redis = Redis.from_url(services.redis_url, decode_responses=False)
    inference = inference_pool(settings)
    sender = FaustRecordSender(app)
    loaded = dict(encoders or {})
    stores: dict[Modality, IndexStore] = {}
    readiness = Readiness(worker_id=settings.worker_id,
                          encoders_loaded=set(loaded) >= set(MODALITIES),
                          problems=[LOADING_QUERIES])
    pipeline = BatchPipeline(
        encoders=loaded, index_stores=stores, inference=inference, metrics=metrics,
        deadletters=DeadLetterSink(sender, settings.topic("deadletter"), metrics),
        key_prefix=settings.topic_prefix, thumb_max_width=settings.thumb_max_width,
        audio_clip_rate=settings.audio_clip_rate_hz,
        audio_clip_format=settings.audio_clip_format,
        problems=readiness.problems,  # a failing device makes the worker unready
        small_batch_threads=settings.torch_threads_small_batches,
        batch_limit=settings.batch_size,
    )
    alerting = build_alerting(
        settings, bootstrap=services.kafka_bootstrap, redis=redis, metrics=metrics,
        encoders=loaded, index_stores=stores, inference=inference, sender=sender,
    )
    pipeline.observers.append(AlertingObserver(alerting))
    input_topics = register_agents(app, pipeline, settings)
    directory = WorkerDirectory(redis, settings.topic_prefix)
    heartbeat = Heartbeat(
        directory, readiness, metrics, instance=instance_id(settings.web_port),
        url=f"http://{settings.web_host}:{settings.web_port}",
        topics={settings.input_topic(m): m.value for m in MODALITIES},
        interval_s=settings.status_interval_s)
    app.worker = Worker(
        settings=settings, services=services, metrics=metrics, redis=redis,
        inference=inference, readiness=readiness, pipeline=pipeline, alerting=alerting,
        lag=LagMonitor(FaustOffsets(app), metrics, topics=frozenset(input_topics)),
        probe=DependencyProbe(readiness, {
            "Kafka": KafkaMetadataCheck(services.kafka_bootstrap, aiokafka_kwargs(settings)),
            "Redis": redis.ping,
        }),
        heartbeat=heartbeat, startup=startup or StartupClock(),
        encoders=loaded, index_stores=stores,
    )
    register_routes(app, api_routes(alerting, readiness, metrics, directory,
                                    token_required=bool(settings.api_token),
                                    grafana_url=settings.grafana_url,
                                    heartbeat_ttl_s=heartbeat.ttl_s))
    app.worker.startup.attach(metrics, lambda: readiness.ready)
    _track_assignment(app, readiness, input_topics, app.worker.startup)
    return app


def _track_assignment(app: faust.App, readiness: Readiness, input_topics: set[str],
                      clock: StartupClock) -> None:
    """Readiness needs an assignment; log which input partitions this worker got."""

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        mine = [tp for tp in assigned if tp.topic in input_topics]
        readiness.assigned_partitions = len(mine)
        if not readiness.assignment_received:
            clock.record_since_app_start("assignment")
        readiness.assignment_received = True
        clock.check_ready()
        log.info("assigned %d input partitions: %s", len(mine),
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(mine)) or "none")

    app.on_partitions_assigned.connect(on_assigned)


@functools.cache
def _default_app() -> LookoutApp:
    return create_app(Settings())


def __getattr__(name: str) -> Any:
    """`streams.worker.app:app` for `faust -A streams.worker.app worker`, built on first use."""
    if name == "app":
        return _default_app()
    raise AttributeError(name)
