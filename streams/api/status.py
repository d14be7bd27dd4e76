"""`GET /status`: the whole worker group, from the heartbeats the workers keep in Redis.

Workers learn about each other without Prometheus: each one writes a small status hash
(`<prefix>:worker:<instance>`, every field JSON) with a TTL of a few heartbeats and adds
its instance to `<prefix>:workers` (a sorted set by last heartbeat, so nothing has to SCAN
the keyspace). A worker that stops removes its entry; one that dies disappears when its
hash expires, and the next reader drops it from the set. The layout is a contract
(docs/redis-layout.md): other tools may read it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from redis.asyncio import Redis

from streams.api.models import GroupStatus, ModalityStatus, WorkerStatus
from streams.api.openapi import Reply, Route, RouteSpec, bind

log = logging.getLogger(__name__)

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/status",
              "The worker group: every worker with a live heartbeat (id, host, encoders, "
              "started, last seen, ready), and per modality the throughput, consumer lag and "
              "the last hour's counts (dead letters by reason), each worker's and summed.",
              "health", operation_id="groupStatus",
              responses={200: Reply("the group", GroupStatus)}),
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class WorkerDirectory:
    """The heartbeat hashes of one deployment (`prefix`): written by each worker, read by
    `GET /status` on any of them."""

    redis: Redis
    prefix: str

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:workers"

    def key(self, instance: str) -> str:
        return f"{self.prefix}:worker:{instance}"

    async def publish(self, status: WorkerStatus, ttl_s: float) -> None:
        """Replace this worker's hash (fields JSON, TTL `ttl_s`) and index it."""
        key, ttl_ms = self.key(status.instance), max(int(ttl_s * 1000), 1)
        fields = {name: json.dumps(value)
                  for name, value in status.model_dump(mode="json").items()}
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=fields)
        pipe.pexpire(key, ttl_ms)
        pipe.zadd(self.index_key, {status.instance: status.last_seen})
        pipe.pexpire(self.index_key, ttl_ms)
        await pipe.execute()

    async def remove(self, instance: str) -> None:
        """A worker that stops leaves at once (not only after its TTL)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key(instance))
        pipe.zrem(self.index_key, instance)
        await pipe.execute()

    async def workers(self) -> list[WorkerStatus]:
        """Every worker whose hash has not expired, by instance; expired ones are dropped
        from the index on the way."""
        instances = [_text(m) for m in await self.redis.zrange(self.index_key, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for instance in instances:
            pipe.hgetall(self.key(instance))
        raws = await pipe.execute() if instances else []
        found: list[WorkerStatus] = []
        gone: list[str] = []
        for instance, raw in zip(instances, raws, strict=True):
            status = self._parse(instance, raw)
            if status is None:
                gone.append(instance)
            else:
                found.append(status)
        if gone:
            await self.redis.zrem(self.index_key, *gone)
        return sorted(found, key=lambda w: w.instance)

    def _parse(self, instance: str, raw: dict[Any, Any]) -> WorkerStatus | None:
        if not raw:
            return None
        try:
            return WorkerStatus.model_validate(
                {_text(k): json.loads(v) for k, v in raw.items()})
        except (ValueError, ValidationError) as e:
            log.warning("unreadable status of worker %s (%s): left out", instance, e)
            return None


def group_status(workers: list[WorkerStatus], ttl_s: float) -> GroupStatus:
    """The workers and their modalities added up."""
    total: dict[str, ModalityStatus] = {}
    for worker in workers:
        for modality, status in worker.modalities.items():
            total[modality] = total.get(modality, ModalityStatus()).plus(status)
    return GroupStatus(workers=workers, modalities=dict(sorted(total.items())),
                       heartbeat_ttl_s=ttl_s)


def routes(directory: WorkerDirectory, ttl_s: float) -> list[Route]:
    async def status(_: web.Request) -> web.Response:
        group = group_status(await directory.workers(), ttl_s)
        return web.json_response(group.model_dump(mode="json"))

    return bind(ROUTES, {("GET", "/status"): status})
