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


async def _no_sleep(_s: float) -> None:
    pass


def test_a_bug_is_retried_a_few_times_with_its_traceback_then_raised(caplog):
    """Errors in `bounded` are not outages: `attempts` tries, then the caller decides."""
    failures: list[BaseException] = []
    slept: list[float] = []

    async def buggy() -> str:
        raise KeyError("query vanished")

    async def sleep(s: float) -> None:
        slept.append(s)

    with caplog.at_level("WARNING", logger="streams.core.retry"), pytest.raises(KeyError):
        asyncio.run(retry_until_done(
            buggy, op="observer", what="observer X", bounded=(Exception,), attempts=3,
            on_failure=failures.append, level=logging.ERROR, sleep=sleep,
            backoff=Backoff(jitter=0)))
    assert len(failures) == 3 and slept == [0.2, 0.4]
    with_stack = [r for r in caplog.records if r.exc_info]
    assert len(with_stack) == 1 and "query vanished" in caplog.text


def test_a_bug_that_goes_away_within_the_bound_is_not_raised():
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KeyError("once")
        return "ok"

    assert asyncio.run(retry_until_done(flaky, op="x", what="x", bounded=(Exception,),
                                        attempts=3, sleep=_no_sleep)) == "ok"


def test_outages_are_waited_out_beyond_the_bound_and_do_not_use_it_up():
    """Outages (`transient`) never count against `attempts`: a long Redis outage must
    not turn into a given-up batch."""
    outcomes = [RedisUnavailable("down")] * 10 + [KeyError("bug")] * 2 + ["ok"]
    calls = []

    async def fn() -> str:
        out = outcomes[len(calls)]
        calls.append(out)
        if isinstance(out, BaseException):
            raise out
        return out

    result = asyncio.run(retry_until_done(fn, op="x", what="x", bounded=(Exception,),
                                          attempts=3, sleep=_no_sleep))
    assert result == "ok" and len(calls) == 13


def test_cancellation_is_never_retried():
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry_until_done(cancelled, op="x", what="x", bounded=(Exception,),
                                     transient=(Exception,), sleep=_no_sleep))


def test_an_outage_wrapped_by_a_client_is_still_an_outage():
    """Faust wraps the broker's error in its own (`ProducerSendError`): look at the cause."""
    calls = []

    class Wrapped(Exception):
        pass

    async def fn() -> str:
        calls.append(1)
        if len(calls) < 6:
            raise Wrapped("send failed") from RedisUnavailable("down")
        return "ok"

    assert asyncio.run(retry_until_done(fn, op="x", what="x", bounded=(Exception,),
                                        attempts=2, sleep=_no_sleep)) == "ok"
