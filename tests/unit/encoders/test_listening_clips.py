"""Listening clips (`LOOKOUT_AUDIO_CLIP_FORMAT`): what a second of audio costs in Redis and
how close the decoded clip is to the sound it was made from. Intelligibility cannot be
measured here; the proxies are the correlation and the log-spectral distance (dB, floor
60 dB under the peak) of the decoded clip against the original at the clip's rate, on a
tone and on a tone in white noise. Bounds are set a margin above what libopus (through
PyAV) and libsndfile 1.2.2 give (docs/deploy.md has the figures)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from encoders.audio import clip_sample_rate, encode_clip
from encoders.content_types import OPUS_RATES


def _sounds(rate: int, seconds: float = 1.0) -> dict[str, np.ndarray]:
    t = np.arange(int(rate * seconds)) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    return {"tone": 0.5 * np.sin(2 * np.pi * 440 * t),
            "noise+tone": 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.1 * noise}


def _log_spectral_distance(a: np.ndarray, b: np.ndarray, n: int = 256) -> float:
    def power(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2] * np.hanning(n)
        return np.abs(np.fft.rfft(frames, axis=1)) ** 2

    pa, pb = power(a), power(b)
    floor = pa.max() * 1e-6
    da, db = 10 * np.log10(pa + floor), 10 * np.log10(pb + floor)
    return float(np.mean(np.sqrt(np.mean((da - db) ** 2, axis=1))))


#: (format, media type, most bytes for 1 s at 8 kHz, least correlation, most LSD in dB);
#: measured: opus (libopus through PyAV, complexity 0, 24 kbit/s) 3.7-4.0 KB, corr >= 0.995,
#: LSD <= 4.2 dB; vorbis 3.5-6 KB, >= 0.994, <= 2.8.
CASES = [("opus", "audio/ogg; codecs=opus", 4_500, 0.97, 6.0),
         ("vorbis", "audio/ogg; codecs=vorbis", 7_000, 0.98, 4.0)]


@pytest.mark.parametrize(("fmt", "media", "most_bytes", "least_corr", "most_lsd"), CASES)
@pytest.mark.parametrize("sound", ["tone", "noise+tone"])
def test_a_compressed_clip_is_small_and_sounds_like_its_chunk(
        fmt, media, most_bytes, least_corr, most_lsd, sound):
    original = _sounds(8000)[sound]
    data, ctype = encode_clip(original.astype(np.float32), 8000, fmt)
    assert ctype == media
    assert len(data) <= most_bytes, f"{len(data)} bytes for 1 s of {sound}"
    played, rate = sf.read(io.BytesIO(data))
    assert rate == 8000 and played.ndim == 1
    assert abs(len(played) - len(original)) <= 0.02 * rate  # within one 20-ms frame
    n = min(len(played), len(original))
    assert np.corrcoef(played[:n], original[:n])[0, 1] >= least_corr
    assert _log_spectral_distance(original[:n], played[:n]) <= most_lsd


def test_opus_costs_about_a_quarter_of_pcm():
    pcm, pcm_type = encode_clip(_sounds(8000)["noise+tone"], 8000, "pcm")
    opus, _ = encode_clip(_sounds(8000)["noise+tone"], 8000, "opus")
    assert pcm_type == "audio/L16;rate=8000;channels=1" and len(pcm) == 16_000
    assert len(opus) * 3.5 < len(pcm)  # 24 kbit/s and the Ogg headers: ~4 KB a second


@pytest.mark.parametrize(("wanted", "decoded", "kept"), [
    (8000, 16000, 8000), (48000, 16000, 16000), (16000, 11025, 8000), (24000, 32000, 24000)])
def test_an_opus_clip_takes_the_nearest_opus_rate_at_or_below(wanted, decoded, kept):
    assert clip_sample_rate("opus", wanted, decoded) == kept in OPUS_RATES
    data, _ = encode_clip(_sounds(kept, 0.25)["tone"], kept, "opus")
    assert sf.info(io.BytesIO(data)).samplerate == kept


def test_other_formats_keep_the_wanted_rate_up_to_the_decoded_one():
    assert clip_sample_rate("vorbis", 11025, 16000) == 11025
    assert clip_sample_rate("pcm", 48000, 16000) == 16000


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="mp3"):
        encode_clip(np.zeros(800, dtype=np.float32), 8000, "mp3")
