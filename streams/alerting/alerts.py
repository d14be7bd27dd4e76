"""The alert record, its Redis history, and publishing it to Kafka exactly once per alert_id.

Publishing protocol (`AlertStore.publish_once`), so that a redelivered record or a
rebalance never puts a second record with the same `alert_id` on the alerts topic:

1. `HGET <prefix>:alert:<id> published` is "1" -> already done, skip.
2. Claim `<prefix>:alert:<id>:claim` with `SET NX PX lease`; if another worker holds the
   claim, raise `AlertClaimBusy` (the pipeline retries the observer; by then the holder
   has published and step 1 skips, or its lease ran out and we take over).
3. If the hash has a `sending` mark, an earlier attempt died between sending and step 5:
   look for the alert_id on the alerts topic (records since the mark); found -> record it
   as published and skip.
4. `HSET sending <now>`, send to Kafka and wait for the broker's ack.
5. `HSET published 1` + the record + the time index, in one MULTI; release the claim
   (atomically, only if it is still ours: `streams.alerting.leases`).

What remains: step 3 reads the topic, so a record the broker had received but not yet
appended when the scan ran (the dead worker's last request, seconds earlier) would be
missed; and without a `verify_sent` function (tests, tools) a crash between the ack and
step 5 republishes. Either way the duplicate carries the same `alert_id`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streams.alerting.leases import HashFields, Leases
from streams.core.errors import LookoutError
from streams.core.sources import matches as source_matches
from streams.queries.model import Severity

log = logging.getLogger(__name__)

SendFn = Callable[[str, bytes, bytes], Awaitable[Any]]
"""`send(topic, key, value)` that returns once the broker acknowledged the record."""
VerifySentFn = Callable[[str, str, int], Awaitable[bool]]
"""`verify(topic, alert_id, since_ms)`: is a record with this alert_id on the topic?"""


def alert_id_for(query_id: str, item_key: str) -> str:
    """Deterministic alert id of (query, item); incidents use their own
    (`streams.alerting.incidents.incident_alert_id`), from their first item."""
    return hashlib.sha256(f"{query_id}\x00{item_key}".encode()).hexdigest()[:32]


#: Compare-and-set tries of one incident update before the batch is retried.
INCIDENT_UPDATE_ATTEMPTS = 20


class AlertClaimBusy(LookoutError):
    """Another worker is publishing (or updating) this alert right now; retry the batch
    shortly."""


class Alert(BaseModel):
    """An alert as published on `<prefix>.alerts` (key = query id) and kept in Redis."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alert_id: str
    query_id: str
    query_name: str
    modality: str
    source: str
    site: str | None = Field(None, description="The source's site (`/sites`), if it has one.")
    ts: int = Field(..., description="Event time of the matching item, ms since epoch.")
    detected_at: int = Field(..., description="When the worker raised it, ms since epoch.")
    score: float
    threshold: float
    item_key: str
    severity: Severity
    labels: dict[str, str] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)
    incident: dict[str, Any] | None = Field(
        None, description="start (ms), end (ms, once closed), peak score; history keeps it "
                          "up to date, the topic record carries it as raised.")

    @classmethod
    def build(cls, *, query_id: str, item_key: str, alert_id: str | None = None,
              **fields: Any) -> Alert:
        fields.setdefault("detected_at", int(time.time() * 1000))
        return cls(alert_id=alert_id or alert_id_for(query_id, item_key), query_id=query_id,
                   item_key=item_key, **fields)

    def to_bytes(self) -> bytes:
        """Canonical JSON body: the exact bytes published, stored and signed for webhooks."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True,
                          separators=(",", ":")).encode()


class AlertStore:
    """Alert history in Redis plus the claim/published flags that make publishing idempotent."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        retention_s: int,
        claim_lease_s: float = 10.0,
        verify_sent: VerifySentFn | None = None,
    ) -> None:
        self._verify_sent = verify_sent
        self._redis = redis
        self._leases = Leases(redis)
        self._fields = HashFields(redis)
        self._prefix = prefix
        self._retention_s = retention_s
        self._lease_ms = int(claim_lease_s * 1000)
        self._token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def key(self, alert_id: str) -> str:
        return f"{self._prefix}:alert:{alert_id}"

    def index_key(self, query_id: str | None = None) -> str:
        return f"{self._prefix}:alerts:by_query:{query_id}" if query_id else \
            f"{self._prefix}:alerts:all"

    async def is_published(self, alert_id: str) -> bool:
        return await self._redis.hget(self.key(alert_id), "published") in (b"1", "1")

    async def publish_once(self, alert: Alert, topic: str, send: SendFn) -> bool:
        """Publish unless this alert_id was published already; True when it was sent now."""
        if await self.is_published(alert.alert_id):
            return False
        claim = self.key(alert.alert_id) + ":claim"
        if not await self._redis.set(claim, self._token, nx=True, px=self._lease_ms):
            if await self.is_published(alert.alert_id):
                return False
            raise AlertClaimBusy(f"alert {alert.alert_id} is being published by another worker")
        try:
            key = self.key(alert.alert_id)
            published, sending = await self._redis.hmget(key, ["published", "sending"])
            if published in (b"1", "1"):  # finished between step 1 and the claim
                return False
            body = alert.to_bytes()
            if sending and self._verify_sent is not None:
                found = await self._verify_sent(topic, alert.alert_id, int(sending) - 5_000)
                log.info("alert %s: an earlier attempt died mid-send; on the topic: %s",
                         alert.alert_id, found)
                if found:
                    await self._record(alert, body)
                    return False
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(key, "sending", int(time.time() * 1000))
            pipe.expire(key, self._retention_s)
            await pipe.execute()
            await send(topic, alert.query_id.encode(), body)
            await self._record(alert, body)
            return True
        finally:
            await self._leases.release(claim, self._token)

    def recorded_key(self) -> str:
        """When each alert was recorded (wall clock): what retention trims by."""
        return f"{self._prefix}:alerts:recorded"

    async def _record(self, alert: Alert, body: bytes) -> None:
        """Store the alert and index it by EVENT time (what history filters on); trim the
        indexes by when alerts were RECORDED, so replayed data with old event times stays
        listed for as long as its record lives."""
        key = self.key(alert.alert_id)
        now_ms = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={
            "published": "1", "json": body, "query_id": alert.query_id,
            "severity": alert.severity.value, "source": alert.source, "ts": alert.ts,
        })
        pipe.expire(key, self._retention_s)
        for index in (self.index_key(alert.query_id), self.index_key()):
            pipe.zadd(index, {alert.alert_id: alert.ts})
        pipe.zadd(self.recorded_key(), {f"{alert.query_id}/{alert.alert_id}": now_ms})
        await pipe.execute()
        await self._trim(now_ms - self._retention_s * 1000)

    async def _trim(self, cutoff_ms: int) -> None:
        """Drop index entries of alerts recorded before `cutoff_ms` (their hashes expired)."""
        old = await self._redis.zrangebyscore(self.recorded_key(), "-inf", cutoff_ms,
                                              start=0, num=1000)
        if not old:
            return
        pipe = self._redis.pipeline(transaction=True)
        for member in old:
            query_id, _, alert_id = (member.decode() if isinstance(member, bytes)
                                     else member).partition("/")
            pipe.zrem(self.index_key(query_id), alert_id)
            pipe.zrem(self.index_key(), alert_id)
            pipe.zrem(self.recorded_key(), member)
        await pipe.execute()

    async def update_incident(self, alert_id: str, **incident: Any) -> None:
        """Merge `incident` fields (end, peak, merged_into) into the stored record, as a
        compare-and-set (the record's TTL kept): two workers updating one alert at once
        (a rebalance overlap) both land, where a read then a write kept only the last."""
        key = self.key(alert_id)
        for _ in range(INCIDENT_UPDATE_ATTEMPTS):
            raw = await self._redis.hget(key, "json")
            if not raw:
                return
            current = raw.decode() if isinstance(raw, bytes) else str(raw)
            alert = Alert.model_validate_json(current)
            merged = {**(alert.incident or {}), **incident}
            body = alert.model_copy(update={"incident": merged}).to_bytes().decode()
            if await self._fields.set_if_unchanged({(key, "json"): (current, body)}, ttl_s=0):
                return
        raise AlertClaimBusy(f"alert {alert_id} kept changing during {INCIDENT_UPDATE_ATTEMPTS} "
                             "incident updates; retried with the batch")

    async def get(self, alert_id: str) -> Alert | None:
        raw = await self._redis.hget(self.key(alert_id), "json")
        return Alert.model_validate_json(raw) if raw else None

    async def recorded_since(self, alert_id: str, limit: int) -> tuple[list[Alert], bool] | None:
        """Alerts recorded after `alert_id`, oldest first, at most the newest `limit` (and
        whether older ones were left out): what an SSE client that last saw `alert_id`
        missed. None when `alert_id` is unknown here (expired, or not recorded yet).

        Alerts recorded in the same millisecond as `alert_id` are included: a client may
        see one again, never miss one."""
        query_id = await self._redis.hget(self.key(alert_id), "query_id")
        if query_id is None:
            return None
        member = f"{query_id.decode() if isinstance(query_id, bytes) else query_id}/{alert_id}"
        since = await self._redis.zscore(self.recorded_key(), member)
        if since is None:
            return None
        members = await self._redis.zrevrangebyscore(
            self.recorded_key(), "+inf", since, start=0, num=limit + 1)
        ids = [(m.decode() if isinstance(m, bytes) else m).partition("/")[2] for m in members]
        ids = [i for i in reversed(ids) if i != alert_id]
        left_out = len(ids) > limit
        pipe = self._redis.pipeline(transaction=False)
        for i in ids[-limit:] if limit else []:
            pipe.hget(self.key(i), "json")
        return [Alert.model_validate_json(raw) for raw in await pipe.execute() if raw], left_out

    async def history(
        self,
        *,
        query_id: str | None = None,
        severity: str | None = None,
        source_glob: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Newest first, filtered; reads the time index, then the records it points to."""
        lo = since_ms if since_ms is not None else "-inf"
        hi = until_ms if until_ms is not None else "+inf"
        out: list[Alert] = []
        offset, page = 0, max(limit, 50)
        while len(out) < limit:
            ids = await self._redis.zrevrangebyscore(
                self.index_key(query_id), hi, lo, start=offset, num=page
            )
            if not ids:
                break
            offset += len(ids)
            pipe = self._redis.pipeline(transaction=False)
            for alert_id in ids:
                pipe.hget(self.key(alert_id.decode() if isinstance(alert_id, bytes)
                                   else alert_id), "json")
            for raw in await pipe.execute():
                if not raw:
                    continue  # expired record still in the index
                alert = Alert.model_validate_json(raw)
                if severity and alert.severity.value != severity:
                    continue
                if source_glob and not source_matches(alert.source, [source_glob]):
                    continue
                out.append(alert)
                if len(out) >= limit:
                    break
        return out


async def alert_on_topic(
    bootstrap: str,
    topic: str,
    alert_id: str,
    since_ms: int,
    client_kwargs: dict[str, Any] | None = None,
) -> bool:
    """Scan every partition of `topic` from `since_ms` to its current end for `alert_id`.

    Used only to recover an alert whose publishing worker died mid-send (rare), so a
    short-lived consumer is fine.
    """
    from streams.kafka.admin import assigned_consumer

    needle = f'"alert_id":"{alert_id}"'.encode()
    consumer, ends = await assigned_consumer(bootstrap, topic, client_kwargs)
    tps = list(ends)
    try:
        starts = await consumer.offsets_for_times({tp: max(0, since_ms) for tp in tps})
        pending = set()
        for tp in tps:
            start = starts.get(tp)
            offset = start.offset if start is not None else ends[tp]
            if offset < ends[tp]:
                consumer.seek(tp, offset)
                pending.add(tp)
        quiet_polls = 0
        while pending and quiet_polls < 5:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            quiet_polls = 0 if batches else quiet_polls + 1
            for tp, records in batches.items():
                for rec in records:
                    if rec.value and needle in rec.value:
                        return True
                    if rec.offset + 1 >= ends[tp]:
                        pending.discard(tp)
        return False
    finally:
        await consumer.stop()
