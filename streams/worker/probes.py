"""Readiness follows the services the worker depends on: Kafka and Redis.

Without a probe `/readyz` kept answering 200 while Kafka was down (the consumer only logs
its reconnects) and a load balancer or orchestrator kept sending API traffic to a worker
that could neither index nor alert. Every `interval_s` the probe asks a Kafka broker for
cluster metadata and PINGs Redis, each bounded by `timeout_s`; a failure marks the worker
unready with the reason (`/readyz` 503 names it) until the next success. Liveness
(`/healthz`) is untouched: a worker waiting for Kafka is alive and must not be restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from streams.api.health import Readiness
from streams.core.errors import LookoutError
from streams.core.periodic import every, start_task, stop_task

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[Any]]


class DependencyProbe:
    """Runs named checks periodically and records which dependencies are unreachable."""

    def __init__(self, readiness: Readiness, checks: Mapping[str, Check],
                 interval_s: float = 5.0, timeout_s: float = 3.0) -> None:
        self._readiness = readiness
        self._checks = dict(checks)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None

    async def probe_once(self) -> None:
        """One round: every check, concurrently; the readiness reflects this round."""
        results = await asyncio.gather(*(self._run(c) for c in self._checks.values()))
        for name, problem in zip(self._checks, results, strict=True):
            before = self._readiness.unreachable.get(name)
            if problem is None:
                self._readiness.unreachable.pop(name, None)
                if before is not None:
                    log.info("%s is reachable again", name)
            else:
                self._readiness.unreachable[name] = problem
                if before is None:
                    log.warning("%s is unreachable: %s; /readyz answers 503 until it is back",
                                name, problem)

    async def _run(self, check: Check) -> str | None:
        try:
            await asyncio.wait_for(check(), self.timeout_s)
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        except Exception as e:  # noqa: BLE001 - any failure means "not reachable now"
            text, name = str(e), type(e).__name__
            return (text if text.startswith(name) else f"{name}: {text}")[:300]
        return None

    def start(self) -> None:
        self._task = start_task(self._task, lambda: every(
            self.interval_s, self.probe_once, "dependency probe"), "dependency-probe")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None
        for check in self._checks.values():
            close = getattr(check, "close", None)
            if close is not None:
                await close()


class KafkaMetadataCheck:
    """Asks a broker for cluster metadata over a client of its own (not the consumer's, so
    the probe never competes with the consumer's fetches)."""

    def __init__(self, bootstrap: str, client_kwargs: Mapping[str, Any] | None = None) -> None:
        self._bootstrap = bootstrap
        self._client_kwargs = dict(client_kwargs or {})
        self._client: Any = None

    async def __call__(self) -> None:
        from aiokafka.client import AIOKafkaClient

        if self._client is None:
            client = AIOKafkaClient(bootstrap_servers=self._bootstrap, **self._client_kwargs)
            try:
                await client.bootstrap()
            except BaseException:
                await client.close()
                raise
            self._client = client
            return
        await self._client.fetch_all_metadata()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class ServiceUnreachable(LookoutError):
    """Kafka or Redis did not answer when the worker started."""


async def preflight(kafka_bootstrap: str, redis_url: str, *, wait_s: float = 5.0,
                    kafka_kwargs: Mapping[str, Any] | None = None) -> None:
    """Wait up to `wait_s` for Kafka and Redis to answer; else raise `ServiceUnreachable`
    with one line that names the service, its address and what to do.

    Without it a worker pointed at a wrong or stopped Kafka spent ~40 s and ~125 log lines
    of consumer retries before the reason surfaced; an orchestrator restarting a worker
    that exits 1 at once (with backoff) is the usual contract instead.
    """
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url, socket_connect_timeout=2.0, socket_timeout=2.0)
    kafka = KafkaMetadataCheck(kafka_bootstrap, kafka_kwargs)
    checks: dict[str, Check] = {"Kafka": kafka, "Redis": redis.ping}
    readiness = Readiness("preflight", True, True, True)
    probe = DependencyProbe(readiness, checks, timeout_s=min(5.0, wait_s))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    try:
        with _quiet("aiokafka"), _quiet(__name__):
            while True:
                await probe.probe_once()
                if not readiness.unreachable or loop.time() >= deadline:
                    break
                await asyncio.sleep(1.0)
    finally:
        await kafka.close()
        await redis.aclose()
    if readiness.unreachable:
        where = {"Kafka": kafka_bootstrap, "Redis": _redact(redis_url)}
        raise ServiceUnreachable("; ".join(
            f"{name} at {where[name]} is unreachable after {wait_s:g} s ({why})"
            for name, why in readiness.unreachable.items())
            + " - start the embedded stack with `lookout stack up`, or fix "
              "LOOKOUT_KAFKA_BOOTSTRAP / LOOKOUT_REDIS_URL")


def _redact(url: str) -> str:
    """A Redis URL without its password."""
    from yarl import URL

    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """The client's own connection errors are what the one-line error summarises."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
