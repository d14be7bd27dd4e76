"""Webhook signing, verification and backoff."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from streams.alerting.alerts import Alert
from streams.alerting.webhooks import backoff_delay, sign, verify_signature


def test_signature_matches_hmac_sha256_over_raw_body():
    body = b'{"alert_id":"x"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"
    assert verify_signature(body, "s3cret", f"sha256={expected}")
    assert not verify_signature(body + b" ", "s3cret", f"sha256={expected}")
    assert not verify_signature(body, "other", f"sha256={expected}")
    assert not verify_signature(body, "s3cret", None)


@given(st.binary(max_size=500), st.text(min_size=1, max_size=40))
def test_sign_verify_roundtrip(body, secret):
    assert verify_signature(body, secret, sign(body, secret))


@given(st.integers(1, 30), st.floats(0.01, 2), st.floats(0.1, 60), st.floats(0, 1))
def test_backoff_bounded_and_growing(attempt, base, cap, r):
    d = backoff_delay(attempt, base, cap, rand=lambda: r)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= d <= ceiling
    assert backoff_delay(attempt + 1, base, cap, rand=lambda: 1.0) >= backoff_delay(
        attempt, base, cap, rand=lambda: 1.0
    )


def test_alert_body_is_canonical_and_id_deterministic():
    kw = dict(query_name="n", modality="logs", source="s", ts=1, detected_at=2, score=0.9,
              threshold=0.5, severity="critical", labels={"b": "2", "a": "1"},
              evidence={"text": "disk full"})
    a = Alert.build(query_id="q", item_key="k", **kw)
    b = Alert.build(query_id="q", item_key="k", **kw)
    assert a.alert_id == b.alert_id and a.to_bytes() == b.to_bytes()
    assert Alert.model_validate_json(a.to_bytes()) == a
