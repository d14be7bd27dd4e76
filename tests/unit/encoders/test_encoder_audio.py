"""Audio decoding: containers, raw PCM, mix-down, resampling and length fitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from encoder_samples import tone, wav_bytes

from encoders.audio import decode_audio, fit_length
from encoders.errors import EncoderInputError


def test_wav_and_flac_decode_to_mono_float() -> None:
    x = tone(440, seconds=0.5, rate=16_000)
    for fmt, ctype in (("WAV", "audio/wav"), ("FLAC", "audio/flac")):
        out = decode_audio(wav_bytes(x, 16_000, fmt), ctype, 16_000)
        assert out.dtype == torch.float32 and out.ndim == 1 and out.shape[0] == 8000
        assert np.abs(out.numpy() - x).max() < 1e-3


def test_stereo_is_mixed_down_and_resampled() -> None:
    left, right = tone(300, 1.0, rate=8_000), np.zeros(8_000)
    out = decode_audio(wav_bytes(np.stack([left, right], 1), 8_000), "audio/x-wav", 16_000)
    assert out.shape[0] == 16_000
    assert out.abs().max() == pytest.approx(0.25, abs=0.02)  # mean of the two channels


def test_raw_l16_is_big_endian_interleaved() -> None:
    x = tone(440, 0.25, amp=0.5, rate=16_000)
    stereo = np.stack([x, x], 1)
    pcm = (stereo * 32767).astype(">i2").tobytes()
    out = decode_audio(pcm, "audio/L16; rate=16000; channels=2", 16_000)
    assert out.shape[0] == 4000
    assert np.abs(out.numpy() - x).max() < 1e-3


@pytest.mark.parametrize(
    ("payload", "ctype", "reason"),
    [
        (b"", "audio/wav", "empty"),
        (b"RIFF\x00\x00\x00\x00WAVEjunkjunk", "audio/wav", "corrupt or unsupported"),
        (b"\x00\x01\x02", "audio/L16;rate=16000;channels=1", "truncated raw PCM"),
        (b"\x00\x01", "audio/L16;channels=1", "rate"),
        (b"\x00\x01", "audio/mpeg", "unsupported audio content-type"),
    ],
)
def test_bad_audio_raises_input_error(payload: bytes, ctype: str, reason: str) -> None:
    with pytest.raises(EncoderInputError, match=reason):
        decode_audio(payload, ctype, 16_000)


def test_the_reason_for_a_corrupt_file_is_the_same_every_time() -> None:
    """libsndfile names an in-memory file by its address; a dead letter's reason must not."""
    reasons = set()
    for _ in range(3):
        with pytest.raises(EncoderInputError) as err:
            decode_audio(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunk", "audio/wav", 16_000)
        reasons.add(str(err.value))
    assert len(reasons) == 1 and "0x" not in reasons.pop()


def test_fit_length_tiles_pads_and_crops() -> None:
    w = torch.arange(4, dtype=torch.float32)
    assert fit_length(w, 10).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert fit_length(w, 6, mode="pad").tolist() == [0, 1, 2, 3, 0, 0]
    assert fit_length(w, 2).tolist() == [0, 1]


def test_a_flac_bomb_is_refused_from_its_header_before_decoding() -> None:
    """Two minutes of silence compress to a few KB of FLAC and decode to 23 MB of floats:
    the header says so, and the decoder refuses before reading a sample."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(48_000 * 120, dtype=np.int16), 48_000, format="FLAC")
    payload = buf.getvalue()
    assert len(payload) < 100_000
    with pytest.raises(EncoderInputError, match="refused before decoding"):
        decode_audio(payload, "audio/flac", 16_000)


def test_header_limits_on_channels_rate_length_and_expansion() -> None:
    from encoders.audio import check_audio_header

    check_audio_header(16_000, 1, 16_000, 32_000)  # a second of 16-bit mono: fine
    for frames, channels, rate, size, what in (
        (16_000, 64, 16_000, 32_000, "channels"),
        (16_000, 1, 10_000_000, 32_000, "Hz"),
        (16_000 * 3600, 1, 16_000, 10**9, "too long"),
        (16_000 * 500, 2, 16_000, 4_000, "bytes of samples"),
    ):
        with pytest.raises(EncoderInputError, match=what):
            check_audio_header(frames, channels, rate, size)


@pytest.mark.parametrize("kept", [0.05, 0.5, 0.99])
def test_a_truncated_wav_is_refused_not_indexed_as_a_shorter_chunk(kept: float) -> None:
    """libsndfile clamps a WAV's frame count to the bytes present, so a cut-off file read
    as is would be indexed as a shorter (wrong) chunk: its `data` chunk size says how much
    is missing."""
    payload = wav_bytes(tone(440, 0.5, rate=16_000), 16_000)
    with pytest.raises(EncoderInputError, match="truncated WAV"):
        decode_audio(payload[: int(len(payload) * kept)], "audio/wav", 16_000)


def test_a_streamed_wav_of_unknown_length_still_decodes() -> None:
    """A streaming writer cannot know the length up front and puts 0xFFFFFFFF in the
    `data` size (libsndfile then reads to the end): that is no truncation."""
    payload = bytearray(wav_bytes(tone(440, 0.5, rate=16_000), 16_000))
    at = payload.index(b"data") + 4
    payload[at:at + 4] = b"\xff\xff\xff\xff"
    assert decode_audio(bytes(payload), "audio/wav", 16_000).shape[0] == 8000
