"""The encoder contract every model family fills in.

The base class owns what is common (device, dtype, batching, L2 normalisation, the
model fingerprint); a family implements only decoding of one payload and the forward
pass over a decoded batch.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from .errors import NoTextSpace


class Encoder(ABC):
    """Turns payloads of one modality (and, where the model can, text) into unit vectors.

    Contract used by the pipeline (`streams`):
      - `modality` in {"video", "audio", "logs"}; `dim`; `model_id` (name + weights hash);
        `device`; `has_text_space`.
      - `decode(payload, content_type)` -> a decoded item, raising `EncoderInputError` with
        a reason a person can act on (the pipeline sends that record to the dead-letter topic).
      - `encode(decoded_items)` -> float32 tensor [B, dim], L2-normalised, on `self.device`.
      - `encode_payloads(payloads, content_types)` = decode + encode.
      - `encode_text(texts)` -> [B, dim] in the same space, or `NoTextSpace`.
      - `embed_example(payload, content_type)` -> [dim] vector for a pattern example.
    Safe to call from one dedicated executor thread.
    """

    modality: str
    dim: int
    model_id: str
    device: torch.device
    has_text_space: bool = False
    text_model_hint: str = ""

    @property
    def short_id(self) -> str:
        """`model_id` reduced to characters safe in Redis index names and metric labels."""
        return re.sub(r"[^a-zA-Z0-9_.-]+", "-", self.model_id).strip("-").lower()

    @abstractmethod
    def decode(self, payload: bytes, content_type: str | None = None) -> Any:
        """Decode one payload on the CPU; raise EncoderInputError if it is unusable."""

    @abstractmethod
    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        """Embed decoded items: float32 [B, dim], unit length, on `self.device`."""

    def encode_payloads(
        self, payloads: Sequence[bytes], content_types: Sequence[str | None] | None = None
    ) -> torch.Tensor:
        types = content_types or [None] * len(payloads)
        return self.encode([self.decode(p, t) for p, t in zip(payloads, types, strict=True)])

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        hint = f" Use {self.text_model_hint} for text patterns." if self.text_model_hint else ""
        raise NoTextSpace(f"encoder {self.model_id} ({self.modality}) has no text space.{hint}")

    def embed_example(self, payload: bytes, content_type: str | None = None) -> torch.Tensor:
        return self.encode([self.decode(payload, content_type)])[0]
