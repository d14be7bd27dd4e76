"""One webhook delivery of one alert: signed, retried with backoff, recorded once done.

Body: the alert's canonical JSON (`Alert.to_bytes()`). Headers: `X-Lookout-Alert-Id`,
`X-Lookout-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (when the
webhook has a secret; signed again for every attempt). The timestamp is inside the MAC, so
a receiver that checks it against a tolerance window (`verify_signature`) refuses a
captured delivery replayed later. 2xx = delivered; 408/425/429/5xx and connection errors
are retried with exponential backoff and full jitter; other 4xx are permanent.
A delivered (alert_id, url) is recorded in Redis, so a redelivered alert record, a
rebalance or a restart does not call the same webhook again for one alert.
`streams.alerting.dispatch` decides what to deliver and when.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from streams.alerting.alerts import Alert
from streams.alerting.egress import EgressPolicy, EgressRefused, GuardedResolver
from streams.alerting.leases import Leases
from streams.queries.model import Webhook

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Lookout-Signature"
ALERT_ID_HEADER = "X-Lookout-Alert-Id"
RETRYABLE_STATUS = frozenset({408, 425, 429}) | frozenset(range(500, 600))

#: How far a signature's timestamp may be from the receiver's clock (seconds).
DEFAULT_TOLERANCE_S = 300


def _mac(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """Header value for `X-Lookout-Signature`: `t=<unix s>,v1=<hex HMAC of "t.body">`.

    The timestamp is signed with the body (Stripe's scheme), so it cannot be changed to
    make an old delivery look fresh.
    """
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_mac(body, secret, t)}"


def _parse_signature(header: str) -> tuple[int, list[str]] | None:
    """(timestamp, v1 signatures) of a header; None when it has no integer `t`."""
    t: int | None = None
    v1: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            t = int(value)
        elif name == "v1":
            v1.append(value)
    return (t, v1) if t is not None else None


def verify_signature(
    body: bytes,
    secret: str,
    header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Receiver side: True when `header` signs the raw `body` with `secret` and its
    timestamp is within `tolerance_s` of `now` (either way: a replay is stale, a clock
    far ahead is not trusted either). Comparison is constant-time; several `v1=` entries
    are allowed (any may match), as during a secret rotation."""
    parsed = _parse_signature(header or "")
    if parsed is None:
        return False
    t, candidates = parsed
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = _mac(body, secret, t).encode()
    return any(hmac.compare_digest(expected, c.encode("utf-8", "replace")) for c in candidates)


def backoff_delay(
    attempt: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry `attempt` (1-based): full jitter over min(cap, base * 2^(attempt-1))."""
    ceiling = min(cap_s, base_s * (2 ** max(attempt - 1, 0)))
    return ceiling * (0.5 + 0.5 * rand())


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    timeout_s: float = 10.0
    remember_s: int = 7 * 24 * 3600


class WebhookSender:
    """Delivers alerts to webhooks; one instance per worker, with its own HTTP session."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        metrics: Any | None = None,
        policy: DeliveryPolicy | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._redis = redis
        self._leases = Leases(redis)
        self._prefix = prefix
        self._metrics = metrics
        self.policy = policy or DeliveryPolicy()
        self.egress = egress or EgressPolicy()
        self._session: aiohttp.ClientSession | None = None

    def delivered_key(self, alert_id: str, url: str) -> str:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return f"{self._prefix}:webhook:{alert_id}:{digest}"

    def _count(self, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(outcome=outcome).inc()

    async def start(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.egress))
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, alert: Alert, webhook: Webhook) -> bool:
        """POST until delivered or attempts run out; True when delivered (now or before).

        A lease lock per (alert, url), owned by this one call, keeps two deliveries (on
        any workers) from posting at once. The lease covers only the current step (one
        POST, or one backoff sleep), so a worker killed mid-delivery blocks the next one
        for at most `timeout_s` + a few seconds.
        """
        key = self.delivered_key(alert.alert_id, webhook.url)
        lock = key + ":lock"
        token = uuid.uuid4().hex
        # Another delivery of this (alert, url) may hold the lock: wait until it is done.
        while not await self._hold(lock, token, 0.0):
            if await self._redis.exists(key):
                self._count("duplicate_skipped")
                return True
            await asyncio.sleep(0.5)
        try:
            if await self._redis.exists(key):  # delivered before, or by the lock's last holder
                self._count("duplicate_skipped")
                return True
            return await self._post_with_retries(alert, webhook, key, lock, token)
        finally:
            await self._leases.release(lock, token)

    async def _hold(self, lock: str, token: str, extra_s: float) -> bool:
        """Take or extend the lease for one POST plus `extra_s`; False if another holds it."""
        ms = int((self.policy.timeout_s + 5.0 + extra_s) * 1000)
        return await self._leases.hold(lock, token, ms)

    async def _post_with_retries(
        self, alert: Alert, webhook: Webhook, key: str, lock: str, token: str
    ) -> bool:
        await self.start()
        assert self._session is not None
        body = alert.to_bytes()
        headers = {"Content-Type": "application/json", ALERT_ID_HEADER: alert.alert_id}
        try:
            secret = webhook.resolve_secret()
        except KeyError as e:  # never post unsigned what the receiver expects signed
            log.error("webhook %s for alert %s not sent: its secret_env %s is not set on "
                      "this worker", webhook.url, alert.alert_id, e)
            self._count("refused")
            return False
        for attempt in range(1, self.policy.max_attempts + 1):
            if secret:  # per attempt: a retry minutes later carries a fresh time
                headers[SIGNATURE_HEADER] = sign(body, secret)
            if not await self._hold(lock, token, 0.0):
                self._count("handed_over")  # our lease ran out and another worker took over
                return False
            try:
                self.egress.check_url(webhook.url)
                async with self._session.post(webhook.url, data=body, headers=headers,
                                              allow_redirects=False) as resp:
                    status = resp.status
                    await resp.read()
            except EgressRefused as e:  # permanent: the address will not become public
                log.error("webhook for alert %s refused: %s", alert.alert_id, e)
                self._count("refused")
                return False
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                status = None
                log.warning("webhook %s attempt %d for alert %s failed: %s",
                            webhook.url, attempt, alert.alert_id, e)
            if status is not None and 200 <= status < 300:
                await self._redis.set(key, "1", nx=True, ex=self.policy.remember_s)
                self._count("delivered")
                return True
            if status is not None and status not in RETRYABLE_STATUS:
                log.error("webhook %s refused alert %s with HTTP %d; not retrying",
                          webhook.url, alert.alert_id, status)
                self._count("rejected")
                return False
            self._count("retried")
            if attempt < self.policy.max_attempts:
                delay = backoff_delay(attempt, self.policy.base_delay_s, self.policy.max_delay_s)
                await self._hold(lock, token, delay)
                await asyncio.sleep(delay)
        log.error("webhook %s: alert %s not delivered after %d attempts",
                  webhook.url, alert.alert_id, self.policy.max_attempts)
        self._count("failed")
        return False
