"""Backoff schedule and the retry loop that pauses the pipeline during a Redis outage."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.errors import IndexStoreError, RedisUnavailable
from streams.core.metrics import Metrics
from streams.core.retry import Backoff, retry_until_done


@given(st.floats(0.01, 2), st.floats(1.1, 4), st.floats(0.5, 30), st.floats(0, 0.5))
def test_delays_grow_to_the_ceiling_within_jitter(initial, factor, ceiling, jitter):
    backoff = Backoff(initial_s=initial, factor=factor, max_s=ceiling, jitter=jitter)
    delays = backoff.delays(random.Random(1))
    nominal = initial
    for _ in range(30):
        d = next(delays)
        assert nominal * (1 - jitter) - 1e-9 <= d <= nominal * (1 + jitter) + 1e-9
        nominal = min(ceiling, nominal * factor)


def test_transient_failures_are_retried_counted_and_then_succeed():
    metrics = Metrics()
    calls = []
    slept: list[float] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise RedisUnavailable("Redis at redis://x is unreachable")
        return "done"

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    result = asyncio.run(retry_until_done(flaky, op="upsert", what="test", metrics=metrics,
                                          sleep=fake_sleep, backoff=Backoff(jitter=0)))
    assert result == "done" and len(calls) == 4
    assert slept == [0.2, 0.4, 0.8]
    assert metrics.redis_retries.labels(op="upsert")._value.get() == 3


def test_other_errors_propagate_at_once():
    async def broken() -> None:
        raise IndexStoreError("schema mismatch")

    with pytest.raises(IndexStoreError):
        asyncio.run(retry_until_done(broken, op="x", what="test"))


def test_a_failing_observer_is_retried_counted_and_logged_with_its_traceback(caplog):
    """Observers (alerting) retry any Exception; their own counter, the stack once."""
    failures: list[BaseException] = []
    calls = []

    async def observer() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KeyError("query vanished")
        return "ok"

    async def no_sleep(_s: float) -> None:
        pass

    with caplog.at_level("WARNING", logger="streams.core.retry"):
        result = asyncio.run(retry_until_done(
            observer, op="observer", what="observer X", transient=(Exception,),
            on_failure=failures.append, level=logging.ERROR, sleep=no_sleep))
    assert result == "ok" and len(failures) == 2
    assert all(isinstance(e, KeyError) for e in failures)
    with_stack = [r for r in caplog.records if r.exc_info]
    assert len(with_stack) == 1 and "query vanished" in caplog.text
