"""Encoders called from several inference lanes at once (`streams.core.inference`).

The default families are `thread_safe`: embedding in two threads at once gives the vectors
one thread gives. A family that is not runs one forward pass at a time, whatever the
number of threads calling it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from encoder_samples import jpeg_bytes, tone, wav_bytes

from encoders.base import Encoder
from encoders.runtime import Runtime
from encoders.sentence import SentenceEmbedder, SentenceEncoder

#: 48 lines that stay distinct after masking (digits and addresses would not), so every
#: line runs the model instead of hitting the template cache.
LOG_LINES = [f"{who} {did} the {what}"
             for who in ("scheduler", "gateway", "billing", "indexer")
             for did in ("opened", "dropped", "rejected", "queued")
             for what in ("session", "upload", "snapshot")]


def _in_two_threads(encoder: Encoder, batches: list[list[bytes]], ctype: str) -> torch.Tensor:
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(encoder.encode_payloads, b, [ctype] * len(b)) for b in batches]
        return torch.cat([f.result() for f in futures])


def _one_after_another(encoder: Encoder, batches: list[list[bytes]], ctype: str) -> torch.Tensor:
    return torch.cat([encoder.encode_payloads(b, [ctype] * len(b)) for b in batches])


@pytest.mark.parametrize("name", ["video_default", "audio_default", "logs_default"])
def test_a_default_encoder_gives_the_same_vectors_from_two_threads_at_once(name, request,
                                                                           photos):
    encoder = request.getfixturevalue(name)
    assert encoder.thread_safe
    rng = np.random.default_rng(7)
    if name == "video_default":
        images = list(photos.values())
        payloads, ctype = [jpeg_bytes(images[i % len(images)]) for i in range(8)], "image/jpeg"
    elif name == "audio_default":
        payloads = [wav_bytes(tone(200 + 90 * i, 0.5, rate=16_000)
                              + 0.01 * rng.standard_normal(8_000), 16_000) for i in range(8)]
        ctype = "audio/wav"
    else:
        payloads, ctype = [line.encode() for line in LOG_LINES], "text/plain"
    batches = [payloads[i::4] for i in range(4)]
    alone = _one_after_another(encoder, batches, ctype)
    if name == "logs_default":
        encoder.cache.clear()  # the threads must compute, not read what the first pass cached
    together = _in_two_threads(encoder, batches, ctype)
    assert torch.allclose(alone, together, atol=1e-5)


class _Recorder(Encoder):
    """A family whose forward pass notes when it starts and ends."""

    modality = "logs"
    dim = 4

    def __init__(self, thread_safe: bool, meet: threading.Barrier | None = None) -> None:
        self.runtime = Runtime(torch.device("cpu"))
        self.model_id = "recorder"
        self.thread_safe = thread_safe
        self.meet = meet
        self.events: list[str] = []

    def decode(self, payload: bytes, content_type: str | None = None) -> bytes:
        return payload

    def _embed(self, items: Sequence[bytes]) -> torch.Tensor:
        self.events.append("start")
        if self.meet is not None:
            self.meet.wait()  # returns only when the other call is inside too
        else:
            time.sleep(0.02)  # room for another thread to come in, if anything lets it
        self.events.append("end")
        return torch.ones((len(items), self.dim))


def test_a_family_not_marked_thread_safe_runs_one_forward_pass_at_a_time():
    encoder = _Recorder(thread_safe=False)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for f in [pool.submit(encoder.encode, [b"x"]) for _ in range(8)]:
            f.result()
    assert encoder.events == ["start", "end"] * 8


def test_a_thread_safe_family_runs_forward_passes_at_once():
    encoder = _Recorder(thread_safe=True, meet=threading.Barrier(2, timeout=30))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(encoder.encode, [b"x"]) for _ in range(2)]:
            f.result()
    assert encoder.events == ["start", "start", "end", "end"]


def test_a_log_encoder_is_as_thread_safe_as_its_embedder():
    class Unsaid:  # a text model that does not say
        dim, weights_hash = 4, "0" * 16

    cpu = Runtime(torch.device("cpu"))
    assert not SentenceEncoder("x", Unsaid(), cpu).thread_safe  # type: ignore[arg-type]
    assert SentenceEmbedder.thread_safe is False  # transformers' tokenizer reconfigures itself
