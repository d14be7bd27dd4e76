"""Encoder throughput: items/s per encoder and batch size, decode included (bytes in,
unit vectors out), on realistic payloads: 640x480 JPEG frames, 1 s 16 kHz WAV chunks,
distinct log lines (so the template cache does not hide the model)."""

from __future__ import annotations

import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .base import Encoder
from .registry import build_encoder

DEFAULT_SPECS: tuple[tuple[str, str], ...] = (
    ("video", "efficientnet-lite0"),
    ("audio", "aisfx"),
    ("logs", "minilm"),
    ("video", "trivial"),
    ("audio", "trivial"),
    ("logs", "trivial"),
)
CONTENT_TYPES = {"video": "image/jpeg", "audio": "audio/wav", "logs": "text/plain"}


@dataclass(frozen=True)
class BenchResult:
    """One (encoder, batch size) measurement."""

    modality: str
    spec: str
    model_id: str
    device: str
    batch_size: int
    items_per_s: float
    ms_per_batch: float
    batches: int
    load_s: float


def sample_payloads(modality: str, n: int, seed: int = 0) -> list[bytes]:
    """`n` distinct, realistic payloads of one modality."""
    rng = np.random.default_rng(seed)
    if modality == "video":
        return _frames(n, rng)
    if modality == "audio":
        return _sounds(n, rng)
    return _log_lines(n, seed)


def _frames(n: int, rng: np.random.Generator) -> list[bytes]:
    import cv2
    import skimage.data

    bases = [
        skimage.data.astronaut(),
        skimage.data.coffee(),
        skimage.data.chelsea(),
        skimage.data.rocket(),
    ]
    out = []
    for i in range(n):
        img = cv2.resize(bases[i % len(bases)], (640, 480), interpolation=cv2.INTER_AREA)
        img = np.clip(img.astype(np.int16) + rng.integers(-8, 8, img.shape), 0, 255)
        ok, buf = cv2.imencode(
            ".jpg",
            cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 85],
        )
        out.append(buf.tobytes())
    return out


def _sounds(n: int, rng: np.random.Generator, rate: int = 16_000) -> list[bytes]:
    import io

    import soundfile as sf

    t = np.arange(rate) / rate
    out = []
    for _ in range(n):
        x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + rng.normal(0, 0.05, rate)
        buf = io.BytesIO()
        sf.write(buf, x.astype(np.float32), rate, format="WAV")
        out.append(buf.getvalue())
    return out


_WORDS = (
    "disk full timeout connection refused user login failed retry upstream cache miss "
    "worker crashed heartbeat lost queue backlog certificate expired permission denied "
    "socket reset memory pressure shard moved index rebuilt token invalid"
).split()


def _log_lines(n: int, seed: int) -> list[str]:
    r = random.Random(seed)
    return [" ".join(r.choices(_WORDS, k=r.randint(5, 14))) + f" at node-{i}" for i in range(n)]


def bench_encoder(
    encoder: Encoder,
    spec: str,
    batch_sizes: Sequence[int],
    min_seconds: float = 1.5,
    max_batches: int = 50,
    load_s: float = 0.0,
) -> list[BenchResult]:
    """Warm up once per batch size, then time whole decode+encode batches."""
    modality = encoder.modality
    pool = sample_payloads(modality, max(batch_sizes) * 4)
    ctype = CONTENT_TYPES[modality]
    results = []
    for bs in batch_sizes:
        batches = [pool[i * bs % len(pool) :][:bs] for i in range(max_batches)]
        batches = [b if len(b) == bs else pool[:bs] for b in batches]
        run = _runner(encoder, ctype)
        run(batches[0])  # warm-up: lazy init, cudnn autotune, torch.compile
        done, start = 0, time.perf_counter()
        while done < max_batches:
            run(batches[done])
            done += 1
            if time.perf_counter() - start >= min_seconds:
                break
        elapsed = time.perf_counter() - start
        results.append(
            BenchResult(
                modality,
                spec,
                encoder.model_id,
                str(encoder.device),
                bs,
                round(done * bs / elapsed, 2),
                round(1000 * elapsed / done, 2),
                done,
                round(load_s, 2),
            )
        )
    return results


def _runner(encoder: Encoder, ctype: str) -> Callable[[list], None]:
    cache = getattr(encoder, "cache", None)
    if cache is not None:  # measure the model, not the template cache
        cache.max_entries = 0
        cache.clear()

    def run(batch: list) -> None:
        payloads = [p.encode() if isinstance(p, str) else p for p in batch]
        encoder.encode_payloads(payloads, [ctype] * len(payloads))
        if encoder.device.type == "cuda":
            torch.cuda.synchronize(encoder.device)

    return run


def run_encoder_bench(
    specs: Sequence[tuple[str, str]] = DEFAULT_SPECS,
    batch_sizes: Sequence[int] = (1, 8, 32),
    device: str = "auto",
    compile: bool = False,
    min_seconds: float = 1.5,
    on_progress: Callable[[str], None] | None = None,
) -> dict:
    """Build each encoder, measure it, return a JSON-ready report."""
    results: list[BenchResult] = []
    for modality, spec in specs:
        if on_progress:
            on_progress(f"loading {spec} ({modality})")
        start = time.perf_counter()
        encoder = build_encoder(spec, modality, device=device, compile=compile)
        load_s = time.perf_counter() - start
        if on_progress:
            on_progress(f"measuring {encoder.model_id} on {encoder.device}")
        results.extend(bench_encoder(encoder, spec, batch_sizes, min_seconds, load_s=load_s))
        del encoder
    return {"machine": machine_info(device), "results": [asdict(r) for r in results]}


def machine_info(device: str = "auto") -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "requested_device": device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info
