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


def evidence_of(modality: Modality | str, key: str, text: str | None) -> dict[str, Any]:
    """What an alert or a search result shows a person of an item: the log text, or where
    the frame's thumbnail is served (`GET /items/{key}/thumb`)."""
    if modality == Modality.VIDEO:
        return {"thumb_url": f"/items/{key}/thumb"}
    if modality == Modality.LOGS:
        return {"text": text}
    return {}


#: Dead-letter reasons as metric labels (a fixed vocabulary; the full text goes in a header).
STAGE_WIRE = "wire_format"
STAGE_DECODE = "decode"
STAGE_ENCODE = "encode"


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
    """The output of the inference thread for one batch."""

    items: list[IndexedItem]
    docs: list[ItemDoc]
    vectors: torch.Tensor
    dead: list[DeadLetter]
    decode_s: float = 0.0
    encode_s: float = 0.0


class BatchObserver(Protocol):
    """Sees every batch after it is in Redis and before its offsets may be committed."""

    async def on_batch(
        self, modality: Modality, items: list[IndexedItem], vectors: torch.Tensor
    ) -> None: ...
