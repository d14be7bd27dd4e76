"""Spec parsing, devices, and the `trivial` encoders through the real decoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from encoder_samples import jpeg_bytes, tone, transformed, wav_bytes

from encoders.errors import EncoderError, EncoderInputError, NoTextSpace, UnknownEncoderSpec
from encoders.registry import FAMILIES, build_encoder, parse_spec
from encoders.runtime import resolve_device, runs_on_cuda


@pytest.mark.parametrize(
    ("spec", "family", "arg"),
    [
        ("efficientnet-lite0", "efficientnet-lite0", ""),
        ("open_clip:ViT-B-32:laion2b_s34b_b79k", "open_clip", "ViT-B-32:laion2b_s34b_b79k"),
        ("open_clip:local-dir:/m/clip", "open_clip", "local-dir:/m/clip"),
        ("clap:laion/clap-htsat-unfused", "clap", "laion/clap-htsat-unfused"),
        ("sentence-transformers:/models/st", "sentence-transformers", "/models/st"),
        ("trivial", "trivial", ""),
    ],
)
def test_parse_spec(spec: str, family: str, arg: str) -> None:
    row, parsed = parse_spec(spec)
    assert (row.name, parsed) == (family, arg)


def test_unknown_or_incomplete_specs_say_what_is_known() -> None:
    with pytest.raises(UnknownEncoderSpec, match="known forms: efficientnet-lite0"):
        parse_spec("resnet9000")
    with pytest.raises(UnknownEncoderSpec, match="needs a model"):
        parse_spec("clap")
    with pytest.raises(UnknownEncoderSpec, match="does not serve video"):
        build_encoder("aisfx", "video", device="cpu")


def test_every_family_documents_download_needs() -> None:
    offline = {name for name, row in FAMILIES.items() if not row.needs_download}
    assert offline == {"efficientnet-lite0", "aisfx", "minilm", "trivial", "null"}


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(EncoderError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="no CUDA device"):
            resolve_device("cuda")


def test_runs_on_cuda_answers_without_raising() -> None:
    assert not runs_on_cuda("cpu")
    assert runs_on_cuda("cuda") and runs_on_cuda("cuda:1")  # even with no GPU: no raise
    assert runs_on_cuda("auto") == torch.cuda.is_available()


def test_trivial_video_is_unit_deterministic_and_sees_similarity(photos) -> None:
    enc = build_encoder("trivial", "video", device="cpu")
    names = list(photos)
    payloads = [jpeg_bytes(photos[n]) for n in names]
    a = enc.encode_payloads(payloads, ["image/jpeg"] * len(payloads))
    assert a.shape == (len(names), enc.dim) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=-1), torch.ones(len(names)), atol=1e-5)
    assert torch.equal(a, enc.encode_payloads(payloads))
    with pytest.raises(NoTextSpace):
        enc.encode_text(["a cat"])
    with pytest.raises(EncoderInputError):
        enc.encode_payloads([b"garbage"])
    assert enc.short_id.startswith("trivial-video-v1-p")


def test_trivial_audio_separates_tones_from_noise() -> None:
    enc = build_encoder("trivial", "audio", device="cpu")
    noise = np.random.default_rng(0).normal(0, 0.3, 44_100)
    vecs = enc.encode_payloads(
        [wav_bytes(tone(440)), wav_bytes(tone(440, amp=0.2, phase=1.0)), wav_bytes(noise)]
    )
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2]
    silent = enc.encode_payloads([wav_bytes(np.zeros(1000))])
    assert silent.norm() == pytest.approx(1.0)  # silence still gives a unit vector


def test_trivial_logs_text_space_matches_templates() -> None:
    enc = build_encoder("trivial", "logs", device="cpu")
    v = enc.encode(["disk 91% full on 10.0.0.1", "disk 17% full on 10.9.9.9", "user login ok"])
    assert torch.allclose(v[0], v[1])
    assert (v[0] @ v[2]) < 0.9
    assert torch.allclose(enc.encode_text(["disk 50% full on 1.2.3.4"])[0], v[0])


def test_decode_many_isolates_bad_records(photos) -> None:
    enc = build_encoder("trivial", "video", device="cpu")
    good = jpeg_bytes(transformed(photos["coffee"]))
    items = enc.decode_many([good, b"", good[: len(good) // 2]])
    assert isinstance(items[0], np.ndarray)
    assert isinstance(items[1], EncoderInputError) and "empty" in str(items[1])
    assert isinstance(items[2], EncoderInputError) and "truncated" in str(items[2])
    assert enc.encode([]).shape == (0, enc.dim)
