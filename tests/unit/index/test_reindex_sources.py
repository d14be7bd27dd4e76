"""`lookout index reindex` re-embeds audio only from the chunk as sent (kept when it raised
an alert), never from the lossy, downsampled listening clip every other audio item keeps:
a new model's vectors of an 8-kHz Opus clip would silently be worse than its old ones."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch

from encoders.modality import Modality
from streams.index.admin import WHY_NOT, _embedded


class _Recorder:
    """An encoder that records what it was given to decode."""

    def __init__(self) -> None:
        self.types: list[str] = []

    def decode(self, payload: bytes, content_type: str) -> bytes:
        self.types.append(content_type)
        return payload

    def encode(self, batch: list[bytes]) -> torch.Tensor:
        return torch.ones(len(batch), 4)


def _wav() -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(1600, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_only_chunks_as_sent_are_re_embedded():
    rows = [
        ({"clip": _wav(), "clip_type": b"audio/wav", "content_type": b"audio/wav"}, 1, "a"),
        ({"clip": b"OggS...", "clip_type": b"audio/ogg; codecs=opus",
          "content_type": b"audio/wav"}, 1, "b"),
        ({"clip": b"\x00\x01" * 80, "clip_type": b"audio/L16;rate=8000;channels=1",
          "content_type": b"audio/flac"}, 1, "c"),
        ({"content_type": b"audio/wav"}, 1, "d"),
    ]
    encoder = _Recorder()
    vectors = _embedded(rows, encoder, Modality.AUDIO)  # type: ignore[arg-type]
    assert [v is not None for v in vectors] == [True, False, False, False]
    assert encoder.types == ["audio/wav"]


def test_the_reason_names_the_listening_clip():
    assert "lossy" in WHY_NOT[Modality.AUDIO] and "LOOKOUT_AUDIO_CLIP_FORMAT" in WHY_NOT[
        Modality.AUDIO]
