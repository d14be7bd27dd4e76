"""The log encoders' shared template cache in Redis (`encoders.log_text.SharedVectors`).

Each worker keeps an in-process LRU of vectors by masked log text; this is the level under
it that the whole deployment shares, so a restarted worker (a deploy, a crash, a pod moved
by a rebalance) and a newly added one start with the templates the group has already
embedded. Without it a fresh worker spends its first seconds re-embedding every template
it meets, and at 50 lines/s its first alerts came 0.3-0.65 s late instead of ~15 ms.

Layout (docs/redis-layout.md): `<prefix>:logvec:<model short id>:<blake2b-128 of the text>`
-> the float32 vector's bytes, with a TTL. The model's short id is in the key, so vectors
of different models (or a changed mask recipe, which changes the id) never mix. It is
called from the inference lanes, so it uses a synchronous client with short timeouts;
the cache treats any error as a miss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from redis import Redis

TIMEOUT_S = 0.5
"""Socket timeout: a Redis that does not answer costs a batch at most this, then the
cache leaves it alone for a while (`encoders.log_text.SHARED_RETRY_S`)."""


def vector_cache_prefix(prefix: str, model_short_id: str) -> str:
    return f"{prefix}:logvec:{model_short_id}:"


class RedisVectorCache:
    """`get_many` / `put_many` of float32 vectors of one model, one round trip each."""

    def __init__(self, redis: Redis, prefix: str, model_short_id: str, dim: int,
                 ttl_s: int) -> None:
        self.redis = redis
        self.key_prefix = vector_cache_prefix(prefix, model_short_id)
        self.dim = dim
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, prefix: str, model_short_id: str, dim: int,
                 ttl_s: int) -> RedisVectorCache:
        client = Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                socket_connect_timeout=TIMEOUT_S, decode_responses=False)
        return cls(client, prefix, model_short_id, dim, ttl_s)

    def key(self, text: str) -> str:
        return self.key_prefix + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def get_many(self, keys: Sequence[str]) -> list[torch.Tensor | None]:
        """The stored vector of each key, or None (absent, or not `dim` float32 values)."""
        if not keys:
            return []
        values = self.redis.mget([self.key(k) for k in keys])
        return [self._vector(v) for v in values]

    def put_many(self, items: dict[str, torch.Tensor]) -> None:
        if not items:
            return
        pipe = self.redis.pipeline(transaction=False)
        for text, vector in items.items():
            data = vector.detach().to(torch.float32).cpu().numpy().tobytes()
            pipe.set(self.key(text), data, ex=self.ttl_s)
        pipe.execute()

    def _vector(self, value: bytes | None) -> torch.Tensor | None:
        if value is None or len(value) != self.dim * 4:
            return None
        return torch.from_numpy(np.frombuffer(value, dtype=np.float32).copy())

    def close(self) -> None:
        self.redis.close()
