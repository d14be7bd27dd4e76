"""The `null` encoder: the pipeline bench's near-zero-cost ceiling."""

from __future__ import annotations

import pytest
import torch

from encoders.registry import build_encoder


@pytest.mark.parametrize("modality", ["video", "audio", "logs"])
def test_the_null_encoder_hashes_bytes_into_unit_vectors(modality: str) -> None:
    """The pipeline bench's ceiling: no decoding, the same bytes give the same vector."""
    enc = build_encoder("null", modality, device="cpu")
    out = enc.encode_payloads([b"a", b"b", b"a", b"\xff\x00 not an image"])
    assert out.shape == (4, enc.dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.equal(out[0], out[2]) and not torch.equal(out[0], out[1])
    assert enc.short_id == f"null-{modality}-v1"
