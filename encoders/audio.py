"""Audio payloads: WAV/FLAC/raw PCM decoding, mono mix-down, resampling and length fitting."""

from __future__ import annotations

import io
import re
from fractions import Fraction
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch

from .content_types import (
    CLIP_MEDIA_TYPES,
    OPUS_RATES,
    ContentTypeError,
    media_type,
    parse_content_type,
    pcm_format,
)
from .errors import EncoderInputError

CONTAINER_TYPES = frozenset(
    {"audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/x-flac"}
)
MAX_SECONDS = 600.0
MAX_CHANNELS = 16
MAX_RATE = 768_000
#: Decoded float32 bytes per payload byte a container may announce: 16-bit PCM is 2x,
#: lossless FLAC of real sound 3-6x; far more is a decompression bomb.
MAX_EXPANSION = 32


def decode_audio(payload: bytes, content_type: str | None, target_rate: int) -> torch.Tensor:
    """Bytes -> 1-D float32 mono tensor at `target_rate`; EncoderInputError if unusable.

    Raw `audio/L16` is 16-bit signed big-endian (network order, RFC 2586), interleaved.
    Without a content type the bytes must be a WAV or FLAC file.
    """
    if not payload:
        raise EncoderInputError("empty audio payload (0 bytes)")
    kind = media_type(content_type)
    if kind == "audio/l16":
        samples, rate = _decode_l16(payload, content_type or "")
    elif kind in CONTAINER_TYPES or not kind:
        samples, rate = _decode_container(payload)
    else:
        raise EncoderInputError(
            f"unsupported audio content-type {kind!r}: send audio/wav, audio/flac or "
            "audio/L16;rate=R;channels=C"
        )
    if samples.shape[0] == 0:
        raise EncoderInputError("audio payload holds no samples")
    if samples.shape[0] / rate > MAX_SECONDS:
        raise EncoderInputError(f"audio chunk too long: {samples.shape[0] / rate:.0f} s")
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    if not np.isfinite(mono).all():
        raise EncoderInputError("audio holds NaN or infinite samples")
    return resample(
        torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32)), rate, target_rate
    )


def _decode_l16(payload: bytes, content_type: str) -> tuple[np.ndarray, int]:
    try:
        rate, channels = pcm_format(parse_content_type(content_type))
    except ContentTypeError as e:
        raise EncoderInputError(f"{e} (e.g. audio/L16;rate=16000;channels=1)") from None
    frame = 2 * channels
    if len(payload) % frame:
        raise EncoderInputError(
            f"truncated raw PCM: {len(payload)} bytes is not a multiple of {frame} "
            f"(16-bit x {channels} channel(s))"
        )
    pcm = np.frombuffer(payload, dtype=">i2").astype(np.float32) / 32768.0
    return pcm.reshape(-1, channels), rate


def check_audio_header(frames: int, channels: int, rate: int, payload_bytes: int) -> None:
    """Refuse what the header announces before reading it: a FLAC of a few KB can announce
    hours of 64-channel audio (gigabytes once decoded)."""
    if not 1 <= channels <= MAX_CHANNELS:
        raise EncoderInputError(f"audio header announces {channels} channels (1..{MAX_CHANNELS})")
    if not 1 <= rate <= MAX_RATE:
        raise EncoderInputError(f"audio header announces {rate} Hz (1..{MAX_RATE})")
    if frames / rate > MAX_SECONDS:
        raise EncoderInputError(
            f"audio chunk too long: its header announces {frames / rate:.0f} s "
            f"(limit {MAX_SECONDS:.0f} s); refused before decoding")
    decoded = frames * channels * 4
    if decoded > MAX_EXPANSION * payload_bytes + (1 << 20):
        raise EncoderInputError(
            f"audio header announces {decoded:,} bytes of samples from {payload_bytes:,} "
            f"bytes (more than {MAX_EXPANSION}x): refused before decoding")


#: `data` chunk sizes a streaming writer puts in when it cannot know the length.
_UNKNOWN_WAV_SIZES = frozenset({0, 0xFFFFFFFF})


def check_wav_complete(payload: bytes) -> None:
    """Refuse a RIFF/WAVE file whose `data` chunk announces more bytes than are present.

    libsndfile clamps the frame count to the bytes it finds, so a cut-off WAV would
    otherwise decode as a shorter chunk and be indexed as if it were whole (a truncated
    JPEG or PNG is refused; so is this). Not a RIFF file, or no `data` chunk header in
    the bytes: left to libsndfile to judge.
    """
    if len(payload) < 12 or payload[:4] != b"RIFF" or payload[8:12] != b"WAVE":
        return
    at = 12
    while at + 8 <= len(payload):
        chunk, size = payload[at:at + 4], int.from_bytes(payload[at + 4:at + 8], "little")
        if chunk == b"data":
            present = len(payload) - at - 8
            if size not in _UNKNOWN_WAV_SIZES and present < size:
                raise EncoderInputError(
                    f"truncated WAV: its data chunk announces {size:,} bytes, "
                    f"{present:,} present")
            return
        at += 8 + size + (size & 1)  # chunks are word-aligned


_BUFFER_NAME = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def _decode_container(payload: bytes) -> tuple[np.ndarray, int]:
    check_wav_complete(payload)
    try:
        with sf.SoundFile(io.BytesIO(payload)) as f:
            rate = f.samplerate
            expected = f.frames
            check_audio_header(max(expected, 0), f.channels, rate, len(payload))
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        # libsndfile names the in-memory file by its address: the same payload would get
        # another reason every time (and a reader learns nothing from it)
        reason = _BUFFER_NAME.sub("the payload", str(e))
        raise EncoderInputError(f"corrupt or unsupported audio file: {reason}") from e
    if 0 < expected and data.shape[0] < expected:
        raise EncoderInputError(
            f"truncated audio file: header announces {expected} frames, found {data.shape[0]}"
        )
    return data, rate


def clip_sample_rate(fmt: str, wanted: int, rate: int) -> int:
    """The rate a listening clip is kept at: `wanted`, never above the decoded `rate`
    (nothing to gain), and for Opus the highest rate Opus has at or below that (8000 at
    least: Opus carries only 8/12/16/24/48 kHz)."""
    target = min(wanted, rate)
    if fmt == "opus":
        return max((r for r in OPUS_RATES if r <= target), default=OPUS_RATES[0])
    return target


def encode_clip(samples: np.ndarray, rate: int, fmt: str) -> tuple[bytes, str]:
    """Mono float samples in [-1, 1] at `rate` -> (bytes, content type) of a clip people
    listen to: `opus`/`vorbis` in Ogg (browsers play both; Opus is ~3.7-4.6 KB for a
    1-s chunk at 8 kHz, see docs/deploy.md), `pcm` raw big-endian `audio/L16` (2 bytes a
    sample). Lossy: for listening, not for re-embedding."""
    clipped = np.clip(samples, -1.0, 1.0)
    if fmt == "pcm":
        pcm = np.round(clipped * 32767.0).astype(">i2")
        return pcm.tobytes(), f"audio/L16;rate={rate};channels=1"
    if fmt not in CLIP_MEDIA_TYPES:
        raise ValueError(f"clip format {fmt!r} is not one of pcm, {', '.join(CLIP_MEDIA_TYPES)}")
    if fmt == "opus":
        return _ogg_opus(clipped.astype(np.float32), rate), CLIP_MEDIA_TYPES[fmt]
    out = io.BytesIO()
    sf.write(out, clipped.astype(np.float32), rate, format="OGG", subtype=fmt.upper())
    return out.getvalue(), CLIP_MEDIA_TYPES[fmt]


#: libopus through PyAV at complexity 0 and 24 kbit/s. Why not libsndfile's Opus: it spent
#: ~11 ms on a 1-s chunk at 8 kHz, ~0.3 of a 2-core worker at 28 chunks/s; this takes
#: ~2.5-4 ms for about the same bytes (3.7-4.6 against 3.5 KB) and follows the waveform
#: as closely (docs/deploy.md, audio clips table). Complexity 0-10 changed neither size nor
#: the fidelity proxies measurably.
OPUS_BITRATE = 24_000
OPUS_COMPLEXITY = 0


def _ogg_opus(samples: np.ndarray, rate: int) -> bytes:
    """Mono float32 samples at an Opus `rate` -> an Ogg/Opus file, through PyAV's libopus."""
    import av

    out = io.BytesIO()
    # An Ogg page every 100 ms (the muxer's default is one a second): libsndfile, and so
    # `soundfile`, refuses some one-page files (a 0.25-s clip) and trims the last page of
    # others to the wrong length; ~30 bytes a page.
    with av.open(out, "w", format="ogg", options={"page_duration": "100000"}) as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = OPUS_BITRATE
        stream.codec_context.options = {"compression_level": str(OPUS_COMPLEXITY)}
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts, frame.time_base = 0, Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def audio_recipe(target_rate: int, **front_end: object) -> dict[str, object]:
    """What shapes a chunk before the model sees it: mono mix, torchaudio's default
    resampler to `target_rate`, and the family's own front end (block length, mel bands);
    part of the audio encoders' model ids."""
    return {"sample_rate": int(target_rate), "mono": "mean", "resampler": "torchaudio-sinc",
            **front_end}


def resample(wave: torch.Tensor, rate: int, target_rate: int) -> torch.Tensor:
    """Band-limited resampling with torchaudio (kernel cached per rate pair)."""
    if rate == target_rate:
        return wave
    return _resampler(rate, target_rate)(wave.unsqueeze(0))[0]


@lru_cache(maxsize=16)
def _resampler(rate: int, target_rate: int) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.Resample(rate, target_rate)


def fit_length(wave: torch.Tensor, length: int, mode: str = "tile") -> torch.Tensor:
    """Crop to `length` samples, or lengthen a short chunk by tiling it (or zero padding)."""
    n = wave.shape[-1]
    if n >= length:
        return wave[..., :length]
    if mode == "tile" and n > 0:
        reps = -(-length // n)
        return wave.repeat(reps)[..., :length]
    return torch.nn.functional.pad(wave, (0, length - n))
