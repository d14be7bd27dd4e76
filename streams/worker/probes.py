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
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from streams.api.health import Readiness
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
            return f"{type(e).__name__}: {e}"[:300]
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
