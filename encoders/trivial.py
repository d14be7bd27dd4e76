"""`trivial`: real but cheap encoders, one per modality, behind the same decoders.

They exist so pipeline tests run fast and so benchmarks can measure the pipeline's own
overhead without a neural network. Each is deterministic and says something true about
its input: similar pictures, spectra or log templates get similar vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .audio import audio_recipe
from .audio_encoder import AudioEncoder
from .base import Encoder
from .fingerprint import model_id
from .image_encoder import ImageEncoder
from .log_text import decode_log, log_recipe, normalise_log
from .runtime import Runtime

TRIVIAL_VERSION = "v1"


class TrivialVideoEncoder(ImageEncoder):
    """8x8 RGB thumbnail, centred, through a fixed random projection to 64 dims."""

    modality = "video"
    dim = 64
    max_batch = 1024
    thread_safe = True

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        gen = torch.Generator().manual_seed(8_8_3)
        self.projection = torch.randn((8 * 8 * 3, self.dim), generator=gen).to(runtime.device)
        self.model_id = model_id("trivial-video", TRIVIAL_VERSION, {"thumbnail": 8})

    def _embed(self, items: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        small = np.stack([_tiny(i) for i in items]).astype(np.float32) / 255.0
        x = torch.from_numpy(small.reshape(len(items), -1) - 0.5).to(self.device)
        return x @ self.projection


def _tiny(item: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(item, torch.Tensor):
        item = item.permute(1, 2, 0).cpu().numpy()
    return cv2.resize(item, (8, 8), interpolation=cv2.INTER_AREA)


class TrivialAudioEncoder(AudioEncoder):
    """Log power spectrum of the chunk in 64 log-spaced bands (16 kHz), mean removed."""

    dim = 64
    max_batch = 1024
    thread_safe = True
    sample_rate = 16_000

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        edges = np.geomspace(50, self.sample_rate / 2, self.dim + 1)
        self.edges = edges
        self.model_id = model_id("trivial-audio", TRIVIAL_VERSION,
                                 audio_recipe(self.sample_rate, bands=self.dim))

    def _embed(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        rows = []
        for wave in items:
            spec = torch.fft.rfft(wave.float().cpu(), n=max(wave.shape[-1], 256)).abs().square()
            freqs = np.linspace(0, self.sample_rate / 2, spec.shape[-1])
            idx = np.clip(np.searchsorted(self.edges, freqs) - 1, 0, self.dim - 1)
            bands = torch.zeros(self.dim).index_add_(0, torch.from_numpy(idx), spec)
            logb = torch.log10(bands + 1e-6)
            rows.append(logb - logb.mean())
        return torch.stack(rows).to(self.device)


class TrivialLogEncoder(Encoder):
    """Hashed character trigrams of the normalised line (256 buckets, log counts)."""

    modality = "logs"
    dim = 256
    has_text_space = True
    max_batch = 4096
    thread_safe = True

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.model_id = model_id("trivial-logs", TRIVIAL_VERSION, log_recipe())

    def decode(self, payload: bytes, content_type: str | None = None) -> str:
        return decode_log(payload, content_type)

    def _embed(self, items: Sequence[str]) -> torch.Tensor:
        out = torch.zeros((len(items), self.dim))
        for row, text in enumerate(items):
            padded = f"  {normalise_log(text).lower()} "
            for i in range(len(padded) - 2):
                digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
        return torch.log1p(out).to(self.device)

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._embed(texts)


class NullEncoder(Encoder):
    """No decoding, no model: the vector is a hash of the payload bytes (16 dims).

    Only for measuring the pipeline's own ceiling (`lookout bench pipeline`): Kafka,
    batching, Redis upserts and commits at ~zero encoder cost. It says nothing about the
    content and accepts any bytes, so a corrupt record is indexed rather than dead-lettered;
    never run a real worker with it.
    """

    dim = 16
    has_text_space = True
    max_batch = 4096
    thread_safe = True

    def __init__(self, modality: str, runtime: Runtime) -> None:
        self.modality = modality
        self.runtime = runtime
        self.model_id = model_id(f"null-{modality}", TRIVIAL_VERSION)

    def decode(self, payload: bytes, content_type: str | None = None) -> bytes:
        return bytes(payload)

    def _embed(self, items: Sequence[bytes | str]) -> torch.Tensor:
        digests = b"".join(
            hashlib.blake2b(i.encode() if isinstance(i, str) else i, digest_size=16).digest()
            for i in items)
        codes = np.frombuffer(digests, dtype=np.uint8).reshape(len(items), 16)
        return torch.from_numpy(codes.astype(np.float32) - 127.5).to(self.device)

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._embed(texts)


def build_trivial(modality: str, runtime: Runtime) -> Encoder:
    return {
        "video": TrivialVideoEncoder,
        "audio": TrivialAudioEncoder,
        "logs": TrivialLogEncoder,
    }[modality](runtime)
