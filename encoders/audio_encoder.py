"""Shared decoding for audio encoders: WAV/FLAC/raw L16 to mono at the model's rate."""

from __future__ import annotations

import torch

from .audio import decode_audio
from .base import Encoder


class AudioEncoder(Encoder):
    """An audio chunk encoder; families set `sample_rate` and fill in `_embed` over 1-D
    float32 waveforms at that rate."""

    modality = "audio"
    sample_rate: int

    @property
    def decode_ahead(self) -> bool:
        """libsndfile and resampling on the CPU, whatever the model's device."""
        return True

    def decode(self, payload: bytes, content_type: str | None = None) -> torch.Tensor:
        return decode_audio(payload, content_type, self.sample_rate)
