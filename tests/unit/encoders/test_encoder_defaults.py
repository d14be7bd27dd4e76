"""The three offline default encoders on real inputs: load, unit length, determinism,
query by example, the label bridge, and log paraphrases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from encoder_samples import jpeg_bytes, speech_wav, tone, transformed, wav_bytes

from encoders.errors import EncoderInputError, NoTextSpace

pytestmark = pytest.mark.slow


def _unit(v: torch.Tensor) -> bool:
    return bool(torch.allclose(v.norm(dim=-1), torch.ones(v.shape[0]), atol=1e-4))


# --- video: efficientnet-lite0 + label bridge ----------------------------------------------
@pytest.fixture(scope="module")
def photo_vectors(video_default, photos) -> tuple[list[str], torch.Tensor]:
    names = list(photos)
    return names, video_default.encode([photos[n] for n in names])


def test_video_default_is_unit_and_deterministic(video_default, photos, photo_vectors) -> None:
    names, vecs = photo_vectors
    assert video_default.dim == 1280 + 384 and vecs.shape == (len(names), video_default.dim)
    assert vecs.dtype == torch.float32 and _unit(vecs)
    assert torch.allclose(vecs[:2], video_default.encode([photos[n] for n in names[:2]]), atol=1e-5)
    assert video_default.model_id.startswith("efficientnet-lite0+minilm@")


def test_bridge_class_embeddings_are_cached_on_disk(video_default, encoder_cache_dir) -> None:
    from encoders.efficientnet_bridge import class_embeddings

    files = list(encoder_cache_dir.glob("bridge-*.pt"))
    assert len(files) == 1
    again = class_embeddings(video_default.text, video_default.class_names, encoder_cache_dir)
    assert again.shape == (1000, 384)
    assert torch.allclose(again - again.mean(0), video_default.class_vecs, atol=1e-5)


def test_the_bundled_class_names_are_torchvision_s_imagenet_categories() -> None:
    from torchvision.models import ResNet50_Weights

    from encoders.efficientnet_bridge import imagenet_class_names

    assert imagenet_class_names() == list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def test_photo_query_by_example(video_default, photos, photo_vectors) -> None:
    names, vecs = photo_vectors
    payloads = [jpeg_bytes(transformed(photos[n])) for n in names]
    queries = video_default.encode_payloads(payloads, ["image/jpeg"] * len(payloads))
    single = video_default.embed_example(payloads[0], "image/jpeg")
    assert torch.allclose(single, queries[0], atol=1e-4)  # batch size does not change vectors
    sims = queries @ vecs.T
    nearest = [names[i] for i in sims.argmax(dim=1).tolist()]
    assert nearest == names, f"similarities:\n{sims}"


# Prompts whose ImageNet concepts the label bridge knows (see docs/encoders.md).
BRIDGE_PROMPTS = {
    "a cup of coffee": "coffee",
    "a cat": "chelsea",
    "a rocket": "rocket",
    "a space shuttle": "rocket",
    "a motorcycle": "stereo_motorcycle",
    "a scooter": "stereo_motorcycle",
    "a tripod": "camera",
}


def test_label_bridge_ranks_the_right_photo_first(video_default, photo_vectors) -> None:
    names, vecs = photo_vectors
    prompts = list(BRIDGE_PROMPTS)
    text = video_default.encode_text(prompts)
    assert _unit(text)
    sims = text @ vecs.T
    best = {p: names[i] for p, i in zip(prompts, sims.argmax(dim=1).tolist(), strict=True)}
    assert best == BRIDGE_PROMPTS, f"similarities:\n{sims}"


def test_video_default_rejects_corrupt_frames(video_default) -> None:
    with pytest.raises(EncoderInputError, match="empty"):
        video_default.embed_example(b"", "image/jpeg")
    with pytest.raises(EncoderInputError, match="not a JPEG or PNG"):
        video_default.encode_payloads([b"GIF89a...."], ["image/jpeg"])


# --- audio: aisfx ---------------------------------------------------------------------------
def test_sound_query_by_example(audio_default, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    originals = {
        "tone": wav_bytes(tone(440)),
        "noise": wav_bytes(rng.normal(0, 0.3, 44_100)),
    }
    copies = {
        "tone": wav_bytes(tone(440, amp=0.3, phase=0.7)),  # shifted and quieter
        "noise": wav_bytes(rng.normal(0, 0.2, 44_100)),  # another draw of the same noise
    }
    speech = speech_wav("the alarm went off in the server room", tmp_path / "speech.wav")
    if speech is not None:
        import soundfile as sf

        x, rate = sf.read(tmp_path / "speech.wav")
        originals["speech"] = speech
        shifted = 0.7 * np.concatenate([np.zeros(rate // 10), x])[: len(x)]
        copies["speech"] = wav_bytes(shifted, rate)
    names = list(originals)
    vecs = audio_default.encode_payloads(list(originals.values()))
    assert vecs.shape == (len(names), 512) and _unit(vecs)
    assert torch.allclose(vecs, audio_default.encode_payloads(list(originals.values())), atol=1e-5)
    queries = audio_default.encode_payloads([copies[n] for n in names])
    nearest = [names[i] for i in (queries @ vecs.T).argmax(dim=1).tolist()]
    assert nearest == names, f"similarities:\n{queries @ vecs.T}"
    if speech is None:
        pytest.skip("espeak-ng not installed: tone/noise checked, speech part skipped")


def test_audio_default_handles_rates_lengths_and_has_no_text(audio_default) -> None:
    short16k = wav_bytes(tone(440, 0.3, rate=16_000), 16_000)
    long_ = wav_bytes(tone(440, 6.0))
    pcm = (tone(440, 1.0, rate=16_000) * 32767).astype(">i2").tobytes()
    vecs = audio_default.encode_payloads(
        [short16k, long_, pcm], ["audio/wav", "audio/wav", "audio/L16;rate=16000;channels=1"]
    )
    assert _unit(vecs)
    assert (vecs @ vecs.T).min() > 0.8  # the same tone, whatever the container/rate/length
    with pytest.raises(NoTextSpace, match="clap:laion/clap-htsat-unfused"):
        audio_default.encode_text(["a dog barking"])
    with pytest.raises(EncoderInputError, match="empty"):
        audio_default.embed_example(b"", "audio/wav")


# --- logs: minilm ---------------------------------------------------------------------------
def test_log_paraphrases_score_above_unrelated_lines(logs_default) -> None:
    assert logs_default.dim == 384
    pattern = logs_default.encode_text(["disk is full"])[0]
    lines = [
        "No space left on device on /dev/sda1",
        "user alice logged in from 10.0.0.1",
        "GET /api/v1/items 200 15ms",
        "TLS handshake completed with upstream",
    ]
    vecs = logs_default.encode(lines)
    assert _unit(vecs)
    sims = vecs @ pattern
    assert sims[0] > sims[1:].max() + 0.2, sims


def test_volatile_tokens_do_not_change_the_vector(logs_default) -> None:
    misses_before = logs_default.cache.misses
    a, b, c = logs_default.encode_payloads(
        [
            b"2024-05-01T10:00:00Z request 9f1c2e3d4b5a6978 from 10.1.2.3 took 15ms",
            b"2025-12-31T23:59:59Z request 00aa11bb22cc33dd from 192.168.0.9 took 2310ms",
            b'{"message": "2025-01-01 00:00:00 request 1234abcd5678 from 8.8.8.8 took 1ms"}',
        ],
        ["text/plain", "text/plain", "application/json"],
    )
    assert torch.equal(a, b) and torch.allclose(a, c, atol=1e-6)
    assert logs_default.cache.misses - misses_before == 1  # one template, one model call
