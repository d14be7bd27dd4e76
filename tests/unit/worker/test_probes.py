"""Readiness follows Kafka and Redis: a dependency that fails or hangs makes /readyz 503
with its reason, and the next success makes the worker ready again."""

from __future__ import annotations

import asyncio

import pytest

from streams.api.health import Readiness
from streams.worker.probes import DependencyProbe


def _ready() -> Readiness:
    return Readiness("w", encoders_loaded=True, indexes_ensured=True, assignment_received=True)


class Flaky:
    """A check whose outcome the test sets: None = ok, an exception = raise, "hang"."""

    def __init__(self) -> None:
        self.outcome: Exception | str | None = None
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.outcome == "hang":
            await asyncio.sleep(3600)
        elif isinstance(self.outcome, Exception):
            raise self.outcome


def test_a_down_dependency_makes_the_worker_unready_until_it_answers_again() -> None:
    readiness, kafka, redis = _ready(), Flaky(), Flaky()
    probe = DependencyProbe(readiness, {"Kafka": kafka, "Redis": redis}, timeout_s=0.05)

    async def scenario() -> None:
        await probe.probe_once()
        assert readiness.ready
        kafka.outcome = ConnectionError("Unable to get cluster metadata")
        await probe.probe_once()
        assert not readiness.ready
        assert readiness.missing() == [
            "Kafka is unreachable: ConnectionError: Unable to get cluster metadata"]
        redis.outcome = "hang"
        await probe.probe_once()
        assert "Redis is unreachable: no answer within 0.05 s" in readiness.missing()
        kafka.outcome = redis.outcome = None
        await probe.probe_once()
        assert readiness.ready and readiness.missing() == []

    asyncio.run(scenario())
    assert kafka.calls == redis.calls == 4


def test_the_probe_never_touches_the_other_readiness_conditions() -> None:
    readiness = Readiness("w", problems=["loading standing queries"])
    probe = DependencyProbe(readiness, {"Kafka": Flaky()})
    asyncio.run(probe.probe_once())
    assert readiness.problems == ["loading standing queries"]
    assert not readiness.ready


@pytest.mark.parametrize("error", [OSError("refused"), RuntimeError("bug"), ValueError("x")])
def test_any_failure_of_a_check_counts_as_unreachable(error: Exception) -> None:
    readiness, check = _ready(), Flaky()
    check.outcome = error
    asyncio.run(DependencyProbe(readiness, {"Redis": check}).probe_once())
    assert readiness.unreachable == {"Redis": f"{type(error).__name__}: {error}"}


def test_started_probe_runs_until_stopped_and_closes_its_checks() -> None:
    class Closable(Flaky):
        closed = False

        async def close(self) -> None:
            self.closed = True

    check = Closable()

    async def scenario() -> None:
        probe = DependencyProbe(_ready(), {"Kafka": check}, interval_s=0.01)
        probe.start()
        while check.calls < 3:
            await asyncio.sleep(0.01)
        await probe.stop()

    asyncio.run(scenario())
    assert check.closed and check.calls >= 3
