"""Which alert records the webhook dispatcher delivers, and under which consumer group."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.webhook_dispatch import is_stale, webhook_group


def test_dispatchers_of_one_worker_group_share_their_own_consumer_group():
    assert webhook_group("lookout-worker") == "lookout-worker.webhooks"
    assert webhook_group("a") != webhook_group("b")


def test_an_alert_exactly_max_age_old_is_still_sent_one_ms_more_is_not():
    now = 1_700_000_000_000
    assert not is_stale(now - 3_600_000, now, 3600)
    assert is_stale(now - 3_600_001, now, 3600)


@given(age_ms=st.integers(-10_000, 10**9), max_age_s=st.floats(0.001, 10**6))
def test_stale_means_older_than_max_age(age_ms: int, max_age_s: float):
    now = 1_800_000_000_000
    assert is_stale(now - age_ms, now, max_age_s) == (age_ms > max_age_s * 1000)
