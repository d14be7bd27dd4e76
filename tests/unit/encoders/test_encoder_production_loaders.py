"""The real CLIP / CLAP / sentence-transformers loading code, run on tiny random models
saved locally, and the errors a missing model gives."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from encoder_samples import jpeg_bytes, tone, wav_bytes
from encoder_tiny_models import (
    save_tiny_clap,
    save_tiny_open_clip,
    save_tiny_sentence_transformer,
)

from encoders.errors import ModelNotAvailable
from encoders.registry import build_encoder

pytestmark = pytest.mark.slow


def _unit(v: torch.Tensor) -> bool:
    return bool(torch.allclose(v.norm(dim=-1), torch.ones(v.shape[0]), atol=1e-4))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


def test_open_clip_local_dir(models_dir: Path, photos) -> None:
    folder = save_tiny_open_clip(models_dir / "clip")
    enc = build_encoder(f"open_clip:local-dir:{folder}", "video", device="cpu")
    assert (enc.modality, enc.dim, enc.has_text_space) == ("video", 16, True)
    frames = enc.encode_payloads([jpeg_bytes(photos["coffee"]), jpeg_bytes(photos["chelsea"])])
    text = enc.encode_text(["a cup of coffee", "a cat"])
    assert frames.shape == text.shape == (2, 16) and _unit(frames) and _unit(text)
    assert torch.allclose(frames, enc.encode([photos["coffee"], photos["chelsea"]]), atol=1e-2)
    again = build_encoder(f"open_clip:local-dir:{folder}", "video", device="cpu")
    assert again.model_id == enc.model_id and enc.model_id.startswith("open_clip-clip@")
    assert enc.preprocess.size == 32 and enc.preprocess.mode == "center_crop"


def test_open_clip_fingerprint_follows_the_weights(models_dir: Path) -> None:
    folder = save_tiny_open_clip(models_dir / "clip2")
    first = build_encoder(f"open_clip:local-dir:{folder}", "video", device="cpu").model_id
    weights = folder / "open_clip_pytorch_model.bin"
    state = torch.load(weights, weights_only=True)
    state["logit_scale"] = state["logit_scale"] + 1.0
    torch.save(state, weights)
    second = build_encoder(f"open_clip:local-dir:{folder}", "video", device="cpu").model_id
    assert first != second and first.split("@")[0] == second.split("@")[0]


def test_clap_local_folder(models_dir: Path) -> None:
    folder = save_tiny_clap(models_dir / "clap")
    enc = build_encoder(f"clap:{folder}", "audio", device="cpu")
    assert (enc.modality, enc.dim, enc.sample_rate, enc.has_text_space) == (
        "audio",
        16,
        48_000,
        True,
    )
    sounds = enc.encode_payloads(
        [wav_bytes(tone(440)), wav_bytes(tone(880, rate=16_000), 16_000)], ["audio/wav"] * 2
    )
    text = enc.encode_text(["a dog barking", "glass breaking"])
    assert sounds.shape == text.shape == (2, 16) and _unit(sounds) and _unit(text)
    assert torch.allclose(sounds[:1], enc.encode_payloads([wav_bytes(tone(440))]), atol=1e-4)
    long_chunk = wav_bytes(np.random.default_rng(1).normal(0, 0.2, 11 * 16_000), 16_000)
    assert torch.equal(enc.embed_example(long_chunk), enc.embed_example(long_chunk))


def test_sentence_transformers_local_folder(models_dir: Path) -> None:
    folder = save_tiny_sentence_transformer(models_dir / "st")
    enc = build_encoder(f"sentence-transformers:{folder}", "logs", device="cpu")
    assert (enc.modality, enc.dim) == ("logs", 32)
    vecs = enc.encode(["disk 91% full", "disk 3% full", "login ok"])
    assert _unit(vecs) and torch.equal(vecs[0], vecs[1])
    assert torch.allclose(enc.encode_text(["disk 50% full"])[0], vecs[0])


@pytest.mark.parametrize(
    ("spec", "modality", "advice"),
    [
        ("open_clip:ViT-B-32:/no/such/ckpt.bin", "video", "does not exist"),
        ("open_clip:local-dir:/no/such/dir", "video", "open_clip_config.json"),
        ("open_clip:ViT-B-32", "video", "open_clip:<arch>:<tag or checkpoint path>"),
        ("clap:/no/such/clap", "audio", "save_pretrained"),
        ("sentence-transformers:/no/such/st", "logs", "SentenceTransformer.save"),
    ],
)
def test_missing_local_models_say_what_to_configure(spec: str, modality: str, advice: str) -> None:
    with pytest.raises(ModelNotAvailable, match=advice):
        build_encoder(spec, modality, device="cpu")


def test_offline_defaults_load_and_hub_models_say_what_to_download(tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1 and an empty cache: the offline defaults (minilm, aisfx; the video
    default is those weights plus a local .pth and loads in the session fixture) embed, and
    hub specs fail with download advice. A child process, because huggingface_hub reads
    HF_HUB_OFFLINE at import time."""
    script = textwrap.dedent(
        """
        import torch
        torch.set_num_threads(1)
        from encoders.errors import ModelNotAvailable
        from encoders.registry import build_encoder
        for spec, modality in [("minilm", "logs"), ("aisfx", "audio")]:
            enc = build_encoder(spec, modality, device="cpu")
            print("OK", enc.model_id, enc.dim)
        for spec, modality in [
            ("clap:laion/clap-htsat-unfused", "audio"),
            ("sentence-transformers:sentence-transformers/all-mpnet-base-v2", "logs"),
            ("open_clip:ViT-B-32:laion2b_s34b_b79k", "video"),
        ]:
            try:
                build_encoder(spec, modality, device="cpu")
                print("LOADED", spec)
            except ModelNotAvailable as e:
                print("MISSING", spec, "::", str(e).replace("\\n", " "))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("OK ") == 2, out.stdout
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("MISSING", "LOADED"))]
    assert len(lines) == 3 and all(ln.startswith("MISSING") for ln in lines), lines
    assert "huggingface-cli download laion/clap-htsat-unfused" in lines[0]
    assert "huggingface-cli download sentence-transformers/all-mpnet-base-v2" in lines[1]
    assert "open_clip:<arch>:/path/to/open_clip_pytorch_model.bin" in lines[2]
