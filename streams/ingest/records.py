"""What flows through the ingest stage: a consumed record, a dead letter, an indexed item.

Plain values, shared by the pure batch steps, the dead-letter sink, the pipeline and the
observers above it (alerting), so none of them needs to import another to name a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from encoders.modality import Modality
from streams.core.wire import WireRecord
from streams.index.store import ItemDoc


def evidence_of(modality: Modality | str, key: str, text: str | None,
                has_clip: bool = False) -> dict[str, Any]:
    """What an alert or a search result shows a person of an item: the log text, where the
    frame's thumbnail is served (`GET /items/{key}/thumb`), or where the audio item's kept
    clip is (`GET /items/{key}/audio`; `has_clip`: the item has one)."""
    if modality == Modality.VIDEO:
        return {"thumb_url": f"/items/{key}/thumb"}
    if modality == Modality.LOGS:
        return {"text": text}
    if modality == Modality.AUDIO and has_clip:
        return {"audio_url": f"/items/{key}/audio"}
    return {}


#: Dead-letter reasons as metric labels (a fixed vocabulary; the full text goes in a header).
STAGE_WIRE = "wire_format"
STAGE_DECODE = "decode"
STAGE_ENCODE = "encode"
#: Not the record's fault: a worker error (a bug) that kept failing its retries.
STAGE_ERROR = "error"
#: Longest `lookout-error` built from an exception (a message may embed a whole payload).
MAX_REASON_CHARS = 1000


def error_reason(doing: str, exc: BaseException) -> str:
    """`lookout-error` for a record given up on because of `exc`: what the worker was
    doing, the exception's class and message, cut to `MAX_REASON_CHARS`."""
    reason = f"worker error while {doing}: {type(exc).__name__}: {exc}"
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return reason


@dataclass(frozen=True)
class ConsumedRecord:
    """A Kafka record as consumed, before any validation."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int | None = None

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class DeadLetter:
    """A record that cannot be indexed, why (for a person) and at which stage (for metrics)."""

    record: ConsumedRecord
    reason: str
    stage: str


@dataclass
class IndexedItem:
    """An item that is in Redis; `row` indexes the batch's vector tensor."""

    key: str
    record: WireRecord
    row: int
    text: str | None
    evidence: dict[str, Any]


@dataclass
class EmbeddedBatch:
    """The output of an inference lane for one batch."""

    items: list[IndexedItem]
    docs: list[ItemDoc]
    vectors: torch.Tensor
    dead: list[DeadLetter]
    decode_s: float = 0.0
    encode_s: float = 0.0
    oom_errors: int = 0  # encoder calls that ran out of memory (the batch was split)


class BatchObserver(Protocol):
    """Sees every batch after it is in Redis and before its offsets may be committed.

    An observer may declare `stage` (its metric label, e.g. "alert") and `transient` (its
    own errors that mean "wait and retry", such as a claim another worker holds); Redis
    and Kafka outages are waited out anyway, any other error is retried a few times and
    then recorded, the batch staying indexed.
    """

    async def on_batch(
        self, modality: Modality, items: list[IndexedItem], vectors: torch.Tensor
    ) -> None: ...
