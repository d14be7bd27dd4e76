"""Lookout's embedded stack: real Kafka (KRaft) and Redis + RediSearch on loopback, no Docker."""

from __future__ import annotations

from .kafka import KafkaJars, KafkaNode, kafka_is_ready
from .redis_server import RedisServer, redis_is_ready
from .stack import (
    EmbeddedStack,
    Services,
    ServiceStatus,
    StackStatus,
    UpResult,
    resolve_services,
)

__all__ = [
    "EmbeddedStack",
    "KafkaJars",
    "KafkaNode",
    "RedisServer",
    "ServiceStatus",
    "Services",
    "StackStatus",
    "UpResult",
    "kafka_is_ready",
    "redis_is_ready",
    "resolve_services",
]
