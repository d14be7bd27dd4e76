"""Webhook signing, verification and backoff."""

from __future__ import annotations

import hashlib
import hmac
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from streams.alerting.alerts import Alert
from streams.alerting.webhooks import backoff_delay, sign, verify_signature

T0 = 1_700_000_000


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"alert_id":"x"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret", timestamp=T0) == f"t={T0},v1={expected}"
    assert verify_signature(body, "s3cret", f"t={T0},v1={expected}", now=T0)


def test_signature_without_timestamp_uses_the_clock():
    t, _ = sign(b"{}", "k").removeprefix("t=").split(",")
    assert abs(int(t) - time.time()) <= 2


secrets_ = st.text(min_size=1, max_size=40)
times = st.integers(0, 4_000_000_000)


@given(st.binary(max_size=500), secrets_, times, st.integers(-300, 300))
def test_sign_verify_roundtrip_within_the_tolerance(body, secret, t, skew):
    assert verify_signature(body, secret, sign(body, secret, t), now=t + skew)


@given(st.binary(max_size=500), secrets_, times, st.binary(min_size=1, max_size=8))
def test_a_tampered_body_fails(body, secret, t, extra):
    assert not verify_signature(body + extra, secret, sign(body, secret, t), now=t)


@given(st.binary(max_size=200), secrets_, secrets_, times)
def test_another_secret_fails(body, secret, other, t):
    assume(other != secret)
    assert not verify_signature(body, other, sign(body, secret, t), now=t)


@given(st.binary(max_size=200), secrets_, times, st.integers(301, 10**9))
def test_a_stale_or_future_timestamp_fails(body, secret, t, skew):
    header = sign(body, secret, t)
    assert not verify_signature(body, secret, header, now=t + skew)  # a replay
    assert not verify_signature(body, secret, header, now=t - skew)  # a clock far ahead


def test_tolerance_is_the_receivers_choice():
    header = sign(b"b", "k", T0)
    assert verify_signature(b"b", "k", header, tolerance_s=3600, now=T0 + 3000)
    assert not verify_signature(b"b", "k", header, tolerance_s=60, now=T0 + 61)


def test_a_moved_timestamp_fails():
    """Replaying with a fresh `t=` does not help: the timestamp is inside the MAC."""
    mac = sign(b"b", "k", T0).split(",")[1]
    assert not verify_signature(b"b", "k", f"t={T0 + 600},{mac}", now=T0 + 600)


def test_any_of_several_v1_entries_may_match():
    good = sign(b"b", "new", T0).split(",")[1]
    old = sign(b"b", "old", T0).split(",")[1]
    assert verify_signature(b"b", "new", f"t={T0},{old},{good}", now=T0)


@pytest.mark.parametrize("header", [
    None, "", "sha256=abc", "v1=abc", "t=abc,v1=abc", f"t={T0}", "t=\u00b2,v1=x",
    f"t={T0},v1=\u00e9\u00e9", f"t=-{T0},v1=00",
])
def test_malformed_headers_fail_without_raising(header):
    assert not verify_signature(b"b", "k", header, now=T0)


@given(st.text(max_size=80))
def test_any_header_text_is_refused_or_accepted_never_raises(header):
    assert verify_signature(b"b", "k", header, now=T0) in (True, False)


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


def test_the_documented_receiver_snippet_verifies_and_refuses_a_replay():
    """docs/alerting.md's verification code, run as written, agrees with `sign`."""
    doc = (Path(__file__).parents[3] / "docs" / "alerting.md").read_text()
    snippet = doc.split("Verifying a delivery", 1)[1].split("```python", 1)[1].split("```")[0]
    body = b'{"alert_id":"x"}'

    def run(header: str) -> bool:
        scope = {"secret": "k", "raw_body": body,
                 "request": SimpleNamespace(headers={"X-Lookout-Signature": header})}
        exec(textwrap.dedent(snippet), scope)  # noqa: S102  (our own docs)
        return scope["ok"]

    assert run(sign(body, "k"))
    assert not run(sign(body, "k", int(time.time()) - 301))
    assert not run(sign(body + b" ", "k"))
