"""Wait out a Redis (or broker) outage: retry with backoff and say so in the log, never drop.

The agent awaiting `retry_until_done` does not finish its batch, so Faust never acks the
batch's events and their offsets are not committed; when the outage ends the batch goes
through and consumption resumes where it paused.

Outages (`transient`) are waited out however long they last. Anything else that is not an
outage is a bug or a bad input: retrying it forever would stall a partition behind it, so
errors listed in `bounded` get `attempts` tries and are then raised for the caller to
dead-letter or record (`streams.ingest.pipeline`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import redis.exceptions
from aiokafka.errors import KafkaError

from streams.core.errors import RedisUnavailable
from streams.core.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Redis or Kafka unreachable, refusing writes (Redis OOM, read-only replica, loading) or
#: timing out: the pipeline pauses on these and resumes where it was, never drops.
OUTAGES: tuple[type[BaseException], ...] = (
    RedisUnavailable,
    redis.exceptions.ConnectionError,  # BusyLoadingError too
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.TryAgainError,
    KafkaError,
    ConnectionError,
    TimeoutError,
)


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
    bounded: tuple[type[BaseException], ...] = (),
    attempts: int = 3,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_failure: Callable[[BaseException], None] | None = None,
    level: int = logging.WARNING,
) -> T:
    """Call `fn` until it succeeds; `transient` errors are logged, counted and retried.

    An error counts as `transient` when it or its direct cause is one (a producer wraps
    the broker's error). `bounded` errors (not in `transient`) are retried too, but
    raised once they happened `attempts` times; outages in between do not use the
    attempts up. `metrics` counts Redis errors under `op` (transient ones); `on_failure`
    sees every failure. `level` is the log level; at ERROR (bugs rather than outages) the
    first failure is logged with its stack. Anything else propagates. Cancellation (worker
    shutdown) interrupts the wait, so the caller abandons its batch without acking it.
    """
    delays = backoff.delays()
    failures = bugs = 0
    while True:
        try:
            result = await fn()
        except Exception as exc:
            is_outage = caused_by(exc, transient)
            if not (is_outage or caused_by(exc, bounded)):
                raise
            failures += 1
            bugs += not is_outage
            if is_outage and metrics is not None:
                metrics.redis_errors.labels(op=op).inc()
                metrics.redis_retries.labels(op=op).inc()
            if on_failure is not None:
                on_failure(exc)
            if not is_outage and bugs >= attempts:
                raise
            delay = next(delays)
            _log_failure(level, what, exc, failures, delay)
            await sleep(delay)
            continue
        if failures:
            log.warning("%s succeeded after %d failed attempts; resuming", what, failures)
        return result


def caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """`exc` is one of `types`, or was raised from one (one level of `__cause__`)."""
    return isinstance(exc, types) or isinstance(exc.__cause__, types)


def _log_failure(level: int, what: str, exc: BaseException, failures: int,
                 delay: float) -> None:
    if failures == 1:
        log.log(level, "%s failed: %s; pausing and retrying (not dropping anything)",
                what, exc, exc_info=exc if level >= logging.ERROR else None)
    else:
        log.log(level, "%s still failing after %d attempts: %s; next try in %.1fs",
                what, failures, exc, delay)
