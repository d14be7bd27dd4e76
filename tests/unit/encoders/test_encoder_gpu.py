"""The CUDA path: nvJPEG batch decoding, autocast, and CPU/GPU agreement."""

from __future__ import annotations

import pytest
import torch
from encoder_samples import jpeg_bytes, png_bytes, tone, transformed, wav_bytes

from encoders.errors import EncoderInputError
from encoders.registry import build_encoder

pytestmark = pytest.mark.gpu  # skipped without CUDA (tests/conftest.py)


def test_nvjpeg_batch_decode_matches_cpu_and_isolates_bad_items(photos) -> None:
    enc = build_encoder("trivial", "video", device="cuda")
    payloads = [jpeg_bytes(photos[n]) for n in ("coffee", "chelsea", "rocket")]
    gpu_items = enc.decode_many(payloads)
    assert all(isinstance(i, torch.Tensor) and i.is_cuda for i in gpu_items)
    cpu_items = [enc.decode(p) for p in payloads]
    for g, c in zip(gpu_items, cpu_items, strict=True):
        diff = (g.permute(1, 2, 0).cpu().float() - torch.from_numpy(c).float()).abs().mean()
        assert diff < 3.0  # nvJPEG and libjpeg differ by rounding only
    mixed = enc.decode_many([payloads[0], payloads[1][:-5000], png_bytes(photos["horse"])])
    assert isinstance(mixed[1], EncoderInputError)
    assert not isinstance(mixed[0], EncoderInputError)


@pytest.mark.slow
def test_defaults_on_cuda_agree_with_cpu(
    video_default, audio_default, logs_default, photos, encoder_cache_dir
) -> None:
    names = list(photos)
    payloads = [jpeg_bytes(photos[n]) for n in names]
    gpu_video = build_encoder(
        "efficientnet-lite0", "video", device="cuda", cache_dir=encoder_cache_dir
    )
    g = gpu_video.encode_payloads(payloads)
    c = video_default.encode_payloads(payloads)
    assert g.is_cuda and g.dtype == torch.float32
    assert torch.allclose(g.norm(dim=-1), torch.ones(len(names), device="cuda"), atol=1e-3)
    assert (g.cpu() * c).sum(-1).min() > 0.97  # bf16 autocast + nvJPEG stay close to CPU
    q = gpu_video.encode_payloads([jpeg_bytes(transformed(photos[n])) for n in names])
    assert (q @ g.T).argmax(1).tolist() == list(range(len(names)))
    text = gpu_video.encode_text(["a cup of coffee"])
    assert names[int((text @ g.T).argmax())] == "coffee"

    gpu_audio = build_encoder("aisfx", "audio", device="cuda")
    clip = [wav_bytes(tone(440)), wav_bytes(tone(2000))]
    assert (gpu_audio.encode_payloads(clip).cpu() * audio_default.encode_payloads(clip)).sum(
        -1
    ).min() > 0.97

    gpu_logs = build_encoder("minilm", "logs", device="cuda")
    lines = ["disk is full", "No space left on device on /dev/sda1"]
    assert (gpu_logs.encode(lines).cpu() * logs_default.encode(lines)).sum(-1).min() > 0.97
