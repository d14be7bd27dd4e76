"""Composition root of the worker: the Faust app, its agents and everything they need.

`create_app(settings)` builds a `LookoutApp` whose `.lookout` is the `WorkerContext`:
settings, service addresses, metrics, encoders, index stores, Redis client, Kafka sender,
the single inference thread, and the extension points (observers, web routes, start-up and
shutdown hooks). Extensions plug in through `install_extensions(ctx)`. For Faust's own CLI
the module also exposes a lazy `app` built from the environment.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
from aiohttp import web
from redis.asyncio import Redis

from encoders.base import Encoder
from streams.api import auth, health, openapi
from streams.api.errors import error_middleware
from streams.api.health import Readiness
from streams.api.openapi import RouteSpec
from streams.batch_processing import BatchObserver
from streams.deadletter import DeadLetterSink
from streams.index_store import IndexStore
from streams.metrics import Metrics
from streams.redis_retry import retry_until_done
from streams.settings import MODALITIES, Modality, Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Hook = Callable[[], Any]
RouteInstaller = Callable[[web.Application], None]

#: Modules that extend the worker, each with `install(ctx)`; missing ones are skipped.
EXTENSIONS: tuple[str, ...] = ("streams.alerting_setup", "streams.lag_monitor")
SESSION_TIMEOUT_S = 10.0
HEARTBEAT_S = 3.0


@dataclass(frozen=True)
class ServiceAddresses:
    """Where Kafka and Redis are (same shape as `streams.embedded.Services`)."""

    kafka_bootstrap: str
    redis_url: str


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
class WorkerContext:
    """Everything agents, routes and extensions share; built without side effects."""

    settings: Settings
    services: Any
    metrics: Metrics
    encoders: dict[Modality, Encoder]
    redis: Redis
    executor: ThreadPoolExecutor
    readiness: Readiness
    index_stores: dict[Modality, IndexStore] = field(default_factory=dict)
    producer: Any = None
    deadletters: Any = None
    app: Any = None
    observers: list[BatchObserver] = field(default_factory=list)
    web_routes: list[RouteInstaller] = field(default_factory=list)
    route_specs: list[RouteSpec] = field(default_factory=list)
    startup_hooks: list[Hook] = field(default_factory=list)
    shutdown_hooks: list[Hook] = field(default_factory=list)
    _started: asyncio.Event | None = None

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return MODALITIES

    def _started_event(self) -> asyncio.Event:
        if self._started is None:
            self._started = asyncio.Event()
        return self._started

    async def wait_started(self) -> None:
        """Agents wait here until encoders are loaded and the indexes exist."""
        await self._started_event().wait()

    async def run_encoder(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` in the single inference thread, so the event loop keeps heartbeating."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def start(self) -> None:
        """Load missing encoders, ensure one index per modality, run the start-up hooks."""
        s = self.settings
        if not self.readiness.encoders_loaded:
            from streams.encoder_setup import apply_torch_threads, build_modality_encoder

            await self.run_encoder(apply_torch_threads, s)
            for m in MODALITIES:
                if m not in self.encoders:
                    self.encoders[m] = await self.run_encoder(build_modality_encoder, s, m)
            self.readiness.encoders_loaded = True
        for m, enc in self.encoders.items():
            self.metrics.encoder_info.labels(
                modality=m.value, model=enc.short_id, device=str(enc.device)
            ).set(1)
            if m not in self.index_stores:
                self.index_stores[m] = IndexStore(
                    self.redis, prefix=s.topic_prefix, modality=m, model_short_id=enc.short_id,
                    dims=enc.dim, datatype=s.vector_dtype, ttl_s=s.retention_s,
                )
            store = self.index_stores[m]
            await retry_until_done(store.ensure, op="ensure", what=f"creating index {store.name}",
                                   metrics=self.metrics)
        self.readiness.indexes_ensured = True
        await _run_hooks(self.startup_hooks)
        self.metrics.worker_up.set(1)
        self._started_event().set()
        log.info("worker %s started: %s", s.worker_id,
                 ", ".join(f"{m.value}={e.short_id}@{e.device}" for m, e in self.encoders.items()))

    async def stop(self) -> None:
        """Shutdown hooks, then close Redis and the inference thread."""
        self.metrics.worker_up.set(0)
        await _run_hooks(self.shutdown_hooks)
        try:
            await self.redis.aclose()
        except Exception as e:  # closing a dead connection is not worth a traceback
            log.info("closing Redis client: %s", e)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _run_hooks(hooks: list[Hook]) -> None:
    for hook in list(hooks):
        result = hook()
        if inspect.isawaitable(result):
            await result


def install_extensions(ctx: WorkerContext) -> list[str]:
    """Let the extension modules register observers, routes and hooks; returns their names."""
    for name in EXTENSIONS:
        importlib.import_module(name).install(ctx)
    return list(EXTENSIONS)


class LookoutApp(faust.App):
    """A Faust app that carries its `WorkerContext` and serves Lookout's HTTP API."""

    lookout: WorkerContext

    async def on_first_start(self) -> None:
        """Create the input and dead-letter topics before the consumer subscribes to them."""
        await super().on_first_start()
        from streams.kafka_security import kafka_python_kwargs
        from streams.producers import ensure_topics

        s = self.lookout.settings
        topics = [s.input_topic(m) for m in MODALITIES] + [s.topic("deadletter")]
        created = await asyncio.to_thread(
            ensure_topics, self.lookout.services.kafka_bootstrap, topics, s.partitions,
            **kafka_python_kwargs(s),
        )
        if created:
            log.info("created topics %s with %d partitions", ", ".join(created), s.partitions)

    def on_webserver_init(self, web_server: Any) -> None:
        super().on_webserver_init(web_server)
        ctx = self.lookout
        web_app: web.Application = web_server.web_app
        web_app.middlewares.append(error_middleware)
        token = auth.required_token(ctx.settings.web_host, ctx.settings.api_token)
        if token:
            web_app.middlewares.append(auth.bearer_token_middleware(token))
        health.install(web_app, ctx.readiness, ctx.metrics.registry)
        for install_routes in ctx.web_routes:
            install_routes(web_app)
        openapi.install(web_app, ctx.route_specs, version=_version())

    async def on_stop(self) -> None:
        self.lookout.readiness.stopping = True
        await super().on_stop()
        await self.lookout.stop()


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lookout")
    except Exception:
        return "0"


def _broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def _resolve_services(settings: Settings) -> Any:
    if settings.kafka_bootstrap and settings.redis_url:
        return ServiceAddresses(settings.kafka_bootstrap, settings.redis_url)
    from streams.embedded import resolve_services

    return resolve_services(settings)


def create_app(
    settings: Settings,
    *,
    services: Any | None = None,
    metrics: Metrics | None = None,
    encoders: dict[Modality, Encoder] | None = None,
    extensions: bool = True,
) -> LookoutApp:
    """Build the worker's Faust app, agents and context; connects to nothing yet."""
    from streams.agents import register_agents
    from streams.kafka_security import faust_broker_credentials

    services = services or _resolve_services(settings)
    metrics = metrics or Metrics()
    app = LookoutApp(
        settings.worker_id,
        broker=_broker_urls(services.kafka_bootstrap),
        broker_credentials=faust_broker_credentials(settings),
        store="memory://",
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
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
    )
    ctx = WorkerContext(
        settings=settings,
        services=services,
        metrics=metrics,
        encoders=dict(encoders or {}),
        redis=Redis.from_url(services.redis_url, decode_responses=False),
        executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookout-inference"),
        readiness=Readiness(worker_id=settings.worker_id,
                            encoders_loaded=set(encoders or {}) >= set(MODALITIES)),
        app=app,
    )
    ctx.producer = FaustRecordSender(app)
    ctx.deadletters = DeadLetterSink(ctx.producer, settings.topic("deadletter"), metrics)
    app.lookout = ctx
    input_topics = register_agents(app, ctx)

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        mine = [tp for tp in assigned if tp.topic in input_topics]
        ctx.readiness.assigned_partitions = len(mine)
        ctx.readiness.assignment_received = True
        log.info("assigned %d input partitions: %s", len(mine),
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(mine)) or "none")

    app.on_partitions_assigned.connect(on_assigned)

    async def start_worker() -> None:
        await ctx.start()

    app.task(start_worker)
    if extensions:
        install_extensions(ctx)
    return app


@functools.cache
def _default_app() -> LookoutApp:
    return create_app(Settings())


def __getattr__(name: str) -> Any:
    """`streams.app:app` for `faust -A streams.app worker`, built on first use only."""
    if name == "app":
        return _default_app()
    raise AttributeError(name)
