"""Builds a modality's encoder from `Settings`, the one way the worker and benchmarks do it.

Keeps device, `torch.compile`, the derived-data cache under `<home>/cache`, the torch
thread count and the inference lanes consistent wherever an encoder is loaded for the
pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from encoders.base import Encoder
from encoders.log_text import EmbeddingCache
from encoders.modality import MODALITIES, Modality
from encoders.runtime import runs_on_cuda
from streams.config.settings import Settings
from streams.core.inference import InferencePool, lanes_for
from streams.index.vector_cache import RedisVectorCache
from streams.ingest.flow import preparing_lanes

log = logging.getLogger(__name__)


def apply_torch_threads(settings: Settings) -> None:
    """Pin torch's intra-op threads when configured (0 keeps torch's default).

    On small shared boxes one thread is often faster than torch's default, because the
    event loop, Kafka client and other processes compete for the same cores.
    """
    if settings.torch_threads > 0:
        import torch

        torch.set_num_threads(settings.torch_threads)


def torch_threads(settings: Settings) -> int:
    """What `apply_torch_threads` set, or torch's default."""
    import torch

    return settings.torch_threads or torch.get_num_threads()


def inference_lanes(settings: Settings) -> int:
    """The lanes `settings` ask for (`lanes_for`), never more than the batch flow can keep
    busy: a flow with `pipeline_in_flight` 1 or 2 prepares one batch at a time, and a
    second lane would only halve that batch's threads."""
    lanes = lanes_for(settings.inference_lanes, torch_threads(settings),
                      on_gpu=runs_on_cuda(settings.device), compiled=settings.torch_compile)
    return preparing_lanes(lanes, settings.batches_in_flight(lanes))


def inference_pool(settings: Settings) -> InferencePool:
    """The worker's inference lanes, splitting the torch threads between them."""
    pool = InferencePool(inference_lanes(settings), torch_threads(settings))
    log.info("inference: %d lane(s) of %d torch thread(s)", pool.lanes, pool.lane_threads)
    return pool


def build_modality_encoder(
    settings: Settings, modality: Modality, spec: str | None = None
) -> Encoder:
    """The configured encoder of `modality` (or `spec`, e.g. `trivial` for a benchmark)."""
    from encoders.registry import build_encoder

    return build_encoder(
        spec or settings.encoder_spec(modality),
        modality.value,
        device=settings.device,
        compile=settings.torch_compile,
        cache_dir=settings.home / "cache",
    )


def load_missing_encoders(
    settings: Settings,
    encoders: dict[Modality, Encoder],
    announce: Callable[[Modality, str], None] | None = None,
    took: Callable[[Modality, float], None] | None = None,
) -> dict[Modality, Encoder]:
    """Load every modality's configured encoder that `encoders` lacks (in place) and apply
    the torch thread setting first; the one loading path of the CLI and the worker.
    `took(modality, seconds)` hears how long each load took (the worker's start-up clock).

    One after another: loading is Python and unpickling under the GIL. On the 2-core box
    the three defaults loaded in 1.9-2.0 s one after another and 3.1-3.3 s in three
    threads; loading them in the worker beside Faust's start and group join instead of
    before it gave the same time to ready (7.1 s both, median of 4 on a loaded box)."""
    apply_torch_threads(settings)
    for m in MODALITIES:
        if m not in encoders:
            if announce is not None:
                announce(m, settings.encoder_spec(m))
            start = time.monotonic()
            encoders[m] = build_modality_encoder(settings, m)
            if took is not None:
                took(m, time.monotonic() - start)
    return encoders



def template_caches(encoders: dict[Modality, Encoder]) -> dict[Modality, EmbeddingCache]:
    """The template caches of the encoders that have one (the log encoders)."""
    return {m: cache for m, enc in encoders.items()
            if isinstance(cache := getattr(enc, "cache", None), EmbeddingCache)}


def share_log_caches(settings: Settings, redis_url: str,
                     encoders: dict[Modality, Encoder]) -> list[RedisVectorCache]:
    """Give every template cache the deployment's shared level in Redis, unless
    `log_cache_shared` is off; returns the stores, to close at stop."""
    if not settings.log_cache_shared:
        return []
    stores = []
    for m, cache in template_caches(encoders).items():
        enc = encoders[m]
        cache.shared = store = RedisVectorCache.from_url(
            redis_url, settings.topic_prefix, enc.short_id, enc.dim, settings.log_cache_ttl_s)
        stores.append(store)
    return stores
