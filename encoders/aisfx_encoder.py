"""Offline audio default: the aiSFX sound-effects CNN (sound by example, no text space).

aiSFX embeds blocks of 100 mel frames (hop 1024 at 44.1 kHz, about 2.3 s). Shorter chunks
are tiled up to one block; longer ones are cut into half-overlapping blocks whose
embeddings are averaged. The spectrogram follows aisfx's librosa recipe (peak
normalisation, 96 HTK mel bands with unit-area filters, log10(1 + 1e4 * power), / 9.4578).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .audio import audio_recipe, fit_length
from .audio_encoder import AudioEncoder
from .errors import ModelNotAvailable
from .fingerprint import hash_file, model_id
from .runtime import Runtime

SAMPLE_RATE = 44_100
N_FFT, HOP, N_MELS = 2048, 1024, 96
BLOCK_FRAMES = 100
BLOCK_SAMPLES = (BLOCK_FRAMES - 1) * HOP  # centred STFT -> exactly BLOCK_FRAMES frames
SPEC_MAX = 9.457798957824707
EMBED_DIM = 512


def load_aisfx(device: torch.device) -> tuple[torch.nn.Module, str]:
    """EmbeddingNet with aisfx's checkpoint, loaded with weights_only and an allow-list."""
    try:
        import aisfx
        from aisfx.models.cnn2d import EmbeddingNet
    except ImportError as e:
        raise ModelNotAvailable(
            "aisfx is missing: pip install --no-deps aisfx==0.1.2 (its own dependency pins "
            "are too old; Lookout needs only the package files)"
        ) from e
    import numpy as np
    from numpy._core.multiarray import scalar

    path = aisfx.inference.get_path_modelWeights()
    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype("int64"))]
    with torch.serialization.safe_globals(allowed):
        weights, _datasets = torch.load(path, map_location="cpu", weights_only=True)
    net = EmbeddingNet("max", 3, 1, 64)
    prefix = "embedding_net."
    net.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})
    return net.eval().to(device), hash_file(path)


class _MelFrontEnd(torch.nn.Module):
    """Waveform [B, BLOCK_SAMPLES] -> normalised log-mel [B, frames, 96] as aisfx expects."""

    def __init__(self) -> None:
        super().__init__()
        import torchaudio

        fb = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm=None, mel_scale="htk"
        )
        fb = fb / fb.sum(dim=0, keepdim=True).clamp_min(1e-10)  # librosa norm=1: unit-area filters
        self.register_buffer("fbank", fb)
        self.register_buffer("window", torch.hann_window(N_FFT))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        peak = wave.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)
        wave = wave / peak
        spec = torch.stft(
            wave,
            N_FFT,
            HOP,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [B, freq, frames]
        mel = torch.einsum("bft,fm->btm", power, self.fbank)
        return torch.log10(mel * 10_000.0 + 1.0) / SPEC_MAX


class AisfxEncoder(AudioEncoder):
    """Audio chunks -> 512-d aiSFX embeddings (mean over blocks)."""

    dim = EMBED_DIM
    has_text_space = False
    text_model_hint = "clap:laion/clap-htsat-unfused"
    max_batch = 32
    sample_rate = SAMPLE_RATE
    thread_safe = True  # the mel front end and the net keep nothing between calls

    def __init__(self, net: torch.nn.Module, weights_hash: str, runtime: Runtime) -> None:
        self.runtime = runtime
        self.net = runtime.maybe_compile(net)
        self.front = _MelFrontEnd().to(runtime.device)
        self.model_id = model_id("aisfx", weights_hash, audio_recipe(
            SAMPLE_RATE, n_fft=N_FFT, hop=HOP, n_mels=N_MELS, block_frames=BLOCK_FRAMES,
            peak_normalise=True))

    def _embed(self, items: Sequence[torch.Tensor]) -> torch.Tensor:
        blocks, owners = [], []
        for i, wave in enumerate(items):
            for block in _blocks(wave):
                blocks.append(block)
                owners.append(i)
        x = self.runtime.to_device(torch.stack(blocks))
        emb = self.net(self.front(x).float()).float()
        owner = torch.tensor(owners, device=emb.device)
        sums = torch.zeros((len(items), emb.shape[1]), device=emb.device).index_add_(0, owner, emb)
        counts = torch.bincount(owner, minlength=len(items)).clamp_min(1).unsqueeze(1)
        return sums / counts


def _blocks(wave: torch.Tensor) -> list[torch.Tensor]:
    """One tiled block for short chunks; half-overlapping blocks for long ones."""
    n = wave.shape[-1]
    if n <= BLOCK_SAMPLES:
        return [fit_length(wave, BLOCK_SAMPLES, mode="tile")]
    hop = BLOCK_SAMPLES // 2
    starts = list(range(0, n - BLOCK_SAMPLES + 1, hop))
    if starts[-1] + BLOCK_SAMPLES < n:
        starts.append(n - BLOCK_SAMPLES)
    return [wave[s : s + BLOCK_SAMPLES] for s in starts]
