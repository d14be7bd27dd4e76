"""What `GET /items/{key}/audio` hands a browser: a chunk it can play."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from streams.api.items import playable


@given(samples=st.lists(st.integers(-32768, 32767), min_size=1, max_size=400),
       rate=st.sampled_from([8000, 16000, 44100]), channels=st.sampled_from([1, 2]))
def test_raw_big_endian_pcm_becomes_a_wav_with_the_same_samples(
        samples: list[int], rate: int, channels: int) -> None:
    samples = samples[: len(samples) // channels * channels] or [0] * channels
    raw = np.array(samples, dtype=">i2").tobytes()
    body, media = playable(raw, f"audio/L16;rate={rate};channels={channels}")
    assert media == "audio/wav"
    data, got_rate = sf.read(io.BytesIO(body), dtype="int16", always_2d=True)
    assert got_rate == rate and data.shape[1] == channels
    assert data.reshape(-1).tolist() == samples


def test_wav_and_flac_are_served_as_sent() -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(800, np.int16), 8000, format="FLAC")
    flac = buf.getvalue()
    assert playable(flac, "audio/flac") == (flac, "audio/flac")
    assert playable(b"RIFF....WAVE", "audio/x-wav") == (b"RIFF....WAVE", "audio/wav")
