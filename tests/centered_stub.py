"""A centered audio query without an encoder model: what the preview and live tests of
centered scoring (`thresholds.CENTERED`, the aisfx example queries) share.

Two microphones with their own ambience (a dock's hum, a lobby's room noise) and an
example sound (a siren) recorded in the lobby: raw cosine of the lobby's plain room noise
to it is high (about 0.7), centered on the lobby's own mean it is low, and a siren heard
at the dock, over its hum, scores high centered on the dock's mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from encoders.modality import Modality
from streams.queries.model import RegisteredQuery, parse_query
from streams.queries.registry import vectors_to_b64

DIM = 128  # wide enough that ambience jitter stays far below the centered prior
HUM, ROOM, SIREN = (torch.eye(DIM)[i] for i in range(3))


@dataclass(frozen=True)
class CenteredEncoder:
    """What `build_matrix` and the preview read of an encoder; its family (`aisfx`) is one
    whose example queries are scored centered."""

    model_id: str = "aisfx@test-pabc"
    short_id: str = "aisfx-test-pabc"
    dim: int = DIM
    device: torch.device = torch.device("cpu")
    modality: Modality = Modality.AUDIO


def unit(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(t, dim=-1)


def chunks(base: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` unit vectors scattered a little around `base`."""
    gen = torch.Generator().manual_seed(seed)
    return unit(base + 0.05 * torch.randn(n, DIM, generator=gen))


def siren_query(encoder: CenteredEncoder, sources: tuple[str, ...] = ("mic-*",)
                ) -> RegisteredQuery:
    """An auto-threshold example query (so: centered on aisfx) whose one positive is a
    siren over room noise."""
    q = parse_query({"id": "siren", "name": "siren", "modality": "audio",
                     "positives": [{"item_key": "example-siren"}], "sources": list(sources),
                     "cooldown_s": 0})
    return RegisteredQuery(query=q.stored(), fingerprint=q.fingerprint(),
                           model_id=encoder.model_id, dim=encoder.dim,
                           positive_vectors_b64=vectors_to_b64(unit(ROOM + SIREN).reshape(1, -1)))
