"""The encoder contract every model family fills in.

The base class owns what is common (device, batching, inference mode and autocast, L2
normalisation, the model fingerprint); a family implements only decoding of one payload
and the forward pass over a decoded batch (`_embed`, and `_embed_text` when it has a text
space).
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from .errors import EncoderInputError, NoTextSpace
from .runtime import Runtime

#: Held around the forward passes of families that are not `thread_safe`: one at a time
#: among all of them, as on a single inference thread. Re-entrant, since a family's text
#: path may call into another encoder.
SERIAL = threading.RLock()


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
    Calls may come from several inference lanes at once (`streams.core.inference`); a family
    not marked `thread_safe` runs its forward passes one at a time.
    """

    modality: str
    dim: int
    model_id: str
    runtime: Runtime
    has_text_space: bool = False
    text_model_hint: str = ""
    max_batch: int = 64
    #: The forward pass may run in several threads at once: the family keeps no state
    #: between calls that a call changes (checked family by family; a tokenizer that
    #: reconfigures itself per call, as transformers' fast tokenizers do, is not). False:
    #: `_batched` holds `SERIAL`, so such families run one call at a time, as does every
    #: family under torch.compile (dynamo's compiled graphs are not safe to call at once).
    thread_safe: bool = False

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def decode_ahead(self) -> bool:
        """Decoding is CPU work worth doing as records arrive, in other threads, while the
        previous batch is embedded (image and audio codecs), and `decode` may run in
        several threads at once. False: decode in the batch, in its inference lane."""
        return False

    @property
    def short_id(self) -> str:
        """`model_id` reduced to characters safe in Redis index names and metric labels."""
        return re.sub(r"[^a-zA-Z0-9_.-]+", "-", self.model_id).strip("-").lower()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.model_id} {self.modality} dim={self.dim} {self.device}>"
        )

    # --- what a family implements ---------------------------------------------------------
    @abstractmethod
    def decode(self, payload: bytes, content_type: str | None = None) -> Any:
        """Decode one payload on the CPU; raise EncoderInputError if it is unusable."""

    @abstractmethod
    def _embed(self, items: Sequence[Any]) -> torch.Tensor:
        """Forward pass over at most `max_batch` decoded items -> [B, dim], any scale/dtype."""

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Forward pass for text; only families with a text space override it."""
        hint = f" Use {self.text_model_hint} for text patterns." if self.text_model_hint else ""
        raise NoTextSpace(f"encoder {self.model_id} ({self.modality}) has no text space.{hint}")

    # --- what the base owns ---------------------------------------------------------------
    def encode(self, items: Sequence[Any]) -> torch.Tensor:
        """Embed decoded items: float32 [B, dim], unit length, on `self.device`."""
        return self._batched(self._embed, list(items))

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed text patterns into the same space as `encode`, or raise NoTextSpace."""
        if not self.has_text_space:
            self._embed_text(texts)  # raises NoTextSpace with the family's hint
        return self._batched(self._embed_text, list(texts))

    def encode_payloads(
        self, payloads: Sequence[bytes], content_types: Sequence[str | None] | None = None
    ) -> torch.Tensor:
        items = self.decode_many(payloads, content_types)
        for item in items:
            if isinstance(item, EncoderInputError):
                raise item
        return self.encode(items)

    def decode_many(
        self, payloads: Sequence[bytes], content_types: Sequence[str | None] | None = None
    ) -> list[Any]:
        """Decode a batch; each slot holds the decoded item or the EncoderInputError for it,
        so the pipeline can dead-letter just the bad records."""
        types = content_types or [None] * len(payloads)
        out: list[Any] = []
        for payload, ctype in zip(payloads, types, strict=True):
            try:
                out.append(self.decode(payload, ctype))
            except EncoderInputError as e:
                out.append(e)
        return out

    def embed_example(self, payload: bytes, content_type: str | None = None) -> torch.Tensor:
        return self.encode([self.decode(payload, content_type)])[0]

    def _batched(self, forward: Any, items: list[Any]) -> torch.Tensor:
        if not items:
            return torch.empty((0, self.dim), dtype=torch.float32, device=self.device)
        outs = []
        parallel = self.thread_safe and not self.runtime.compile  # compiled graphs: not
        with nullcontext() if parallel else SERIAL, self.runtime.inference():
            for start in range(0, len(items), self.max_batch):
                out = F.normalize(forward(items[start : start + self.max_batch]).float(), dim=-1)
                dead = out.norm(dim=-1) < 0.5  # all-zero input (silence, blank frame)
                if bool(dead.any()):
                    out[dead, 0] = 1.0  # keep the unit-length promise deterministically
                outs.append(out)
        vectors = torch.cat(outs) if len(outs) > 1 else outs[0]
        return vectors.to(self.device)
