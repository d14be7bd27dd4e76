"""Shared fixtures for the encoder tests: each default model is loaded once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from encoder_samples import PHOTO_NAMES, photo

# One intra-op thread: on a small shared box, OpenMP workers spinning against other
# processes made 2 threads 5-15x slower than 1 (measured on the 2-core dev machine).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return {name: photo(name) for name in PHOTO_NAMES}


@pytest.fixture(scope="session")
def encoder_cache_dir(request: pytest.FixtureRequest) -> Path:
    """pytest's own cache folder: the label bridge's class embeddings survive between runs."""
    return Path(request.config.cache.mkdir("lookout-encoders"))


@pytest.fixture(scope="session")
def video_default(encoder_cache_dir: Path):
    from encoders.registry import build_encoder

    return build_encoder("efficientnet-lite0", "video", device="cpu", cache_dir=encoder_cache_dir)


@pytest.fixture(scope="session")
def audio_default():
    from encoders.registry import build_encoder

    return build_encoder("aisfx", "audio", device="cpu")


@pytest.fixture(scope="session")
def logs_default():
    from encoders.registry import build_encoder

    return build_encoder("minilm", "logs", device="cpu")
