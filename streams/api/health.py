"""`/healthz` (liveness), `/readyz` (readiness) and `/metrics` (Prometheus) of a worker.

Liveness only proves the event loop answers, which is what must stay true while a long
batch embeds in an inference lane. Readiness means the worker can do its job: the
encoders are loaded, the Redis indexes exist, the consumer group gave it an assignment, and
Kafka and Redis answer now (`streams.worker.probes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from streams.api.openapi import HEALTH_ROUTES, Route, bind


@dataclass
class Readiness:
    """Conditions a worker must meet before it reports ready."""

    worker_id: str
    encoders_loaded: bool = False
    indexes_ensured: bool = False
    assignment_received: bool = False
    assigned_partitions: int = 0
    stopping: bool = False
    problems: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # service -> why (probes)

    @property
    def ready(self) -> bool:
        return (self.encoders_loaded and self.indexes_ensured and self.assignment_received
                and not self.stopping and not self.problems and not self.unreachable)

    def missing(self) -> list[str]:
        out = [*self.problems]
        out += [f"{name} is unreachable: {why}" for name, why in self.unreachable.items()]
        if not self.encoders_loaded:
            out.append("encoders are still loading")
        if not self.indexes_ensured:
            out.append("Redis indexes are not ensured yet")
        if not self.assignment_received:
            out.append("no partition assignment from the consumer group yet")
        if self.stopping:
            out.append("the worker is shutting down")
        return out


def routes(readiness: Readiness, registry: CollectorRegistry) -> list[Route]:
    """The three routes; none of them needs the bearer token."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker_id": readiness.worker_id})

    async def readyz(_: web.Request) -> web.Response:
        body = {
            "ready": readiness.ready,
            "worker_id": readiness.worker_id,
            "assigned_partitions": readiness.assigned_partitions,
        }
        if not readiness.ready:
            body["missing"] = readiness.missing()
        return web.json_response(body, status=200 if readiness.ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        # The client's own negotiation: OpenMetrics for a Prometheus that asks for it, else
        # text 0.0.4, with a Content-Type that names the format the body is really in.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    return bind(HEALTH_ROUTES[:3], {("GET", "/healthz"): healthz, ("GET", "/readyz"): readyz,
                                    ("GET", "/metrics"): metrics})
