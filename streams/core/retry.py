"""Wait out a Redis (or broker) outage: retry with backoff and say so in the log, never drop.

The agent awaiting `retry_until_done` does not finish its batch, so Faust never acks the
batch's events and their offsets are not committed; when the outage ends the batch goes
through and consumption resumes where it paused.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from streams.core.errors import RedisUnavailable
from streams.core.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with a ceiling and +-`jitter` (fraction) around each delay."""

    initial_s: float = 0.2
    factor: float = 2.0
    max_s: float = 10.0
    jitter: float = 0.1

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Endless delays: initial, initial*factor, ... capped at max_s, each jittered."""
        rng = rng or random.Random()
        delay = self.initial_s
        while True:
            spread = delay * self.jitter
            yield max(0.0, delay + rng.uniform(-spread, spread))
            delay = min(self.max_s, delay * self.factor)


async def retry_until_done(
    fn: Callable[[], Awaitable[T]],
    *,
    op: str,
    what: str,
    metrics: Metrics | None = None,
    backoff: Backoff = Backoff(),
    transient: tuple[type[BaseException], ...] = (RedisUnavailable,),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_failure: Callable[[BaseException], None] | None = None,
    level: int = logging.WARNING,
) -> T:
    """Call `fn` until it succeeds; `transient` errors are logged, counted and retried.

    `metrics` counts Redis errors under `op`; `on_failure` counts anything else.
    `level` is the log level; at ERROR (bugs rather than outages) the first failure is
    logged with its stack. Anything not `transient` propagates. Cancellation (worker
    shutdown) interrupts the wait, so the caller abandons its batch without acking it.
    """
    delays = backoff.delays()
    failures = 0
    while True:
        try:
            result = await fn()
        except transient as exc:
            failures += 1
            delay = next(delays)
            if metrics is not None:
                metrics.redis_errors.labels(op=op).inc()
                metrics.redis_retries.labels(op=op).inc()
            if on_failure is not None:
                on_failure(exc)
            if failures == 1:
                log.log(level, "%s failed: %s; pausing and retrying (not dropping anything)",
                        what, exc, exc_info=exc if level >= logging.ERROR else None)
            else:
                log.log(level, "%s still failing after %d attempts: %s; next try in %.1fs",
                        what, failures, exc, delay)
            await sleep(delay)
            continue
        if failures:
            log.warning("%s succeeded after %d failed attempts; resuming", what, failures)
        return result
