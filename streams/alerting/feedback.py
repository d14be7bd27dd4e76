"""Feedback on alerts: a person says "false alarm" or "confirmed", and the query learns.

A false alarm adds the alerting item's stored vector to its query's negatives, a confirmed
alert adds it to the positives (`QueryRegistry.add_example`: no re-encoding); the auto
threshold is re-derived on the next refresh (a new positive starts a new background,
scored against the retained items). Every verdict is kept in Redis with who and when:

    <prefix>:feedback:<query_id>           list of verdict JSON, newest first (last 1000)
    <prefix>:feedback:<query_id>:by_alert  hash alert_id -> verdict (the latest per alert)

Precision per query (confirmed / judged) is exported as `lookout_query_precision`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from encoders.modality import MODALITIES, Modality
from streams.alerting.alerts import Alert, AlertStore
from streams.core.errors import AlertNotFound, QueryValidationError
from streams.core.metrics import Metrics
from streams.index.store import IndexStore
from streams.queries.registry import QueryRegistry

Verdict = Literal["false_alarm", "confirmed"]
VERDICTS: tuple[str, ...] = ("false_alarm", "confirmed")
KEEP = 1000


@dataclass(frozen=True)
class FeedbackRecord:
    """One verdict as kept and shown with its query."""

    alert_id: str
    query_id: str
    item_key: str
    verdict: str
    by: str
    at: int
    note: str = ""
    learned: bool = True


class FeedbackStore:
    """Verdicts on alerts, kept per query in Redis, and what the query learns from them."""

    def __init__(self, redis: Any, prefix: str, alerts: AlertStore, registry: QueryRegistry,
                 metrics: Metrics) -> None:
        self._redis = redis
        self._prefix = prefix
        self._alerts = alerts
        self._registry = registry
        self._metrics = metrics

    def key(self, query_id: str) -> str:
        return f"{self._prefix}:feedback:{query_id}"

    async def give(self, alert_id: str, verdict: str, *, by: str, note: str,
                   stores: Mapping[Modality, IndexStore]) -> FeedbackRecord:
        """Record a verdict and teach the alert's query its item (when still indexed)."""
        if verdict not in VERDICTS:
            raise QueryValidationError(f"verdict must be one of {', '.join(VERDICTS)}, "
                                       f"not {verdict!r}")
        alert = await self._alerts.get(alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert {alert_id} in the history (expired or never raised)")
        # A composite alert (modality "composite") teaches nothing: its item is one
        # member's, and the composite has no vectors; the verdict still counts for it.
        store = stores.get(Modality(alert.modality)) if alert.modality in MODALITIES else None
        learned = await self._learn(alert, verdict, store)
        record = FeedbackRecord(alert.alert_id, alert.query_id, alert.item_key, verdict,
                                by or "anonymous", int(time.time() * 1000), note, learned)
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(self.key(alert.query_id), json.dumps(asdict(record)))
        pipe.ltrim(self.key(alert.query_id), 0, KEEP - 1)
        pipe.hset(f"{self.key(alert.query_id)}:by_alert", alert.alert_id, verdict)
        await pipe.execute()
        self._metrics.query_feedback.labels(query_id=alert.query_id, verdict=verdict).inc()
        summary = await self.summary(alert.query_id)
        if summary["precision"] is not None:
            self._metrics.query_precision.labels(query_id=alert.query_id).set(
                summary["precision"])
        return record

    async def _learn(self, alert: Alert, verdict: str, store: IndexStore | None) -> bool:
        """Add the item's stored vector to the query; False when the item is gone."""
        if store is None or self._registry.find(alert.query_id) is None:
            return False
        item = await store.get(alert.item_key)
        if item is None:
            return False
        await self._registry.add_example(alert.query_id, alert.item_key,
                                         np.asarray(item.vector, np.float32),
                                         positive=verdict == "confirmed")
        return True

    async def summary(self, query_id: str, recent: int = 10) -> dict[str, Any]:
        """Counts by verdict (latest per alert), precision, and the newest verdicts."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hvals(f"{self.key(query_id)}:by_alert")
        pipe.lrange(self.key(query_id), 0, recent - 1)
        verdicts, newest = await pipe.execute()
        counts = {v: 0 for v in VERDICTS}
        for raw in verdicts:
            value = raw.decode() if isinstance(raw, bytes) else raw
            counts[value] = counts.get(value, 0) + 1
        judged = counts["confirmed"] + counts["false_alarm"]
        return {**counts, "precision": round(counts["confirmed"] / judged, 4) if judged else None,
                "recent": [json.loads(r) for r in newest]}
