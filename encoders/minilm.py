"""The bundled all-MiniLM-L6-v2 in plain torch: BERT forward, mean pooling, no frameworks.

Why not sentence-transformers for the default? Importing it (with transformers, scikit-learn,
SciPy, timm, torchvision and torch._dynamo, which it pulls in) cost ~7 s of CPU per process
on the 2-core box: most of a worker's start-up (issue 18, item 6). This module needs only
torch, `tokenizers` (the same Rust tokenizer transformers' fast tokenizer wraps, read from
the model's own tokenizer.json) and `safetensors`, and gives the same model:

  - the same token ids (truncation to the model's max_seq_length, [PAD]=0 padding);
  - the same vectors within float rounding (|diff| < 1e-6; a unit test compares them with
    sentence-transformers on the bench corpus);
  - the same weights hash (`STATE_DICT_PREFIX`), so `minilm@<hash>` model ids, the
    indexes named after them and the label-bridge cache stay what they were.

Parameter names are BERT's (`encoder.layer.N.attention.self.query`, ...), so the state dict
loads as saved and `encoders.quantize` finds the layers it keeps in float32 by name. The
model and tokenizer of any other sentence-transformers model still load through
sentence-transformers (`encoders.sentence.load_sentence_transformer`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelNotAvailable
from .fingerprint import hash_state_dict
from .runtime import PrecisionVariants, text_batch_size

STATE_DICT_PREFIX = "0.model."
"""Where sentence-transformers (6.x) puts the BERT weights in its state dict: hashing ours
under the same names gives the same weights hash as loading the folder through it."""


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h, padding_idx=cfg["pad_token_id"])
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        # One segment: token type 0 everywhere, as sentence-transformers feeds it.
        x = (self.word_embeddings(ids) + self.position_embeddings(positions)[None]
             + self.token_type_embeddings.weight[0])
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)


class _DenseNorm(nn.Module):
    """`dense` then a residual LayerNorm (BERT's `attention.output` and `output`)."""

    def __init__(self, d_in: int, h: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, h)
        self.LayerNorm = nn.LayerNorm(h, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, h: int, eps: float) -> None:
        super().__init__()
        self.self = _SelfAttention(h)
        self.output = _DenseNorm(h, h, eps)


class _Intermediate(nn.Module):
    def __init__(self, h: int, inner: int) -> None:
        super().__init__()
        self.dense = nn.Linear(h, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        h, inner, eps = cfg["hidden_size"], cfg["intermediate_size"], cfg["layer_norm_eps"]
        self.heads = cfg["num_attention_heads"]
        self.attention = _Attention(h, eps)
        self.intermediate = _Intermediate(h, inner)
        self.output = _DenseNorm(inner, h, eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        att = self.attention.self

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, self.heads, h // self.heads).transpose(1, 2)

        ctx = F.scaled_dot_product_attention(
            heads(att.query(x)), heads(att.key(x)), heads(att.value(x)), attn_mask=keep)
        x = self.attention.output(ctx.transpose(1, 2).reshape(b, t, h), x)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg["num_hidden_layers"]))


class _Pooler(nn.Module):
    """Held only so the state dict (and its hash) is the checkpoint's; never run."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.dense = nn.Linear(h, h)


class MeanPooledBert(nn.Module):
    """BERT (absolute positions, GELU, post-LayerNorm) followed by mean pooling over the
    real tokens: sentence-transformers' Transformer + Pooling(mean) for this model."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
            raise ModelNotAvailable(f"not a BERT model with GELU: {cfg.get('model_type')!r}")
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)
        self.pooler = _Pooler(cfg["hidden_size"])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask: [B, T] (mask 1 on real tokens) -> [B, hidden] mean of the real tokens."""
        keep = mask[:, None, None, :].bool()  # [B, 1, 1, T]: padding is never attended to
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        m = mask[..., None].to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp_min(1e-9)


class MiniLMEmbedder(PrecisionVariants):
    """Raw text -> mean-pooled vectors [B, dim] on the model's device, unit length when the
    folder ends in a Normalize module (as the bundled model does).

    An `encoders.sentence.TextEmbedder`, like SentenceEmbedder: `model`, `dim`,
    `weights_hash`, `int8(device)`, `bf16(device)` and a call with a batch size. Texts run
    longest first in length buckets of at most `bucket` on a CPU (SentenceEmbedder says
    why: a batch pads to its own longest text); on a GPU batches stay `batch_size`."""

    bucket = 32
    #: `Tokenizer.encode_batch` only reads the tokenizer (truncation is set once, at load).
    thread_safe = True

    def __init__(self, model: nn.Module, tokenizer: Any, device: torch.device,
                 dim: int, weights_hash: str, normalize: bool,
                 autocast: torch.dtype | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dim = dim
        self.weights_hash = weights_hash
        self.normalize = normalize
        self.autocast = autocast

    def with_model(self, model: nn.Module, device: torch.device,
                   autocast: torch.dtype | None) -> MiniLMEmbedder:
        return MiniLMEmbedder(model, self.tokenizer, device, self.dim, self.weights_hash,
                              self.normalize, autocast)

    def __call__(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        if not texts:
            return torch.empty((0, self.dim), device=self.device)
        encodings = self.tokenizer.encode_batch(list(texts))
        # Longest first, as sentence-transformers does: each batch pads to less.
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        out = torch.empty((len(encodings), self.dim), device=self.device)
        size = text_batch_size(batch_size, self.device.type == "cuda", self.bucket)
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            ids, mask = _padded([encodings[i].ids for i in chunk])
            with torch.autocast("cpu", dtype=self.autocast or torch.bfloat16,
                                enabled=self.autocast is not None):
                vecs = self.model(ids.to(self.device), mask.to(self.device))
            if self.normalize:
                vecs = F.normalize(vecs.float(), dim=-1)
            out[torch.tensor(chunk, device=self.device)] = vecs.to(out.dtype)
        return out


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id rows with 0 ([PAD]) -> (ids, attention mask), both [B, T]."""
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


PIPELINE = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling")
NORMALIZE = "sentence_transformers.models.Normalize"


def _check_pipeline(folder: Path) -> bool:
    """Refuse a folder whose modules this loader does not reproduce (anything but BERT then
    mean pooling, optionally normalised); returns whether it normalises."""
    modules = tuple(m["type"] for m in json.loads((folder / "modules.json").read_text()))
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v}
    if modules[:2] != PIPELINE or modules[2:] not in ((), (NORMALIZE,)) \
            or modes != {"pooling_mode_mean_tokens"}:
        raise ModelNotAvailable(
            f"{folder} is not BERT + mean pooling (modules {modules}, pooling {sorted(modes)}); "
            "load it with the sentence-transformers: spec")
    return modules[2:] == (NORMALIZE,)


def load_minilm(folder: Path, device: torch.device) -> MiniLMEmbedder:
    """The sentence-transformers folder `folder` (BERT + mean pooling) as a MiniLMEmbedder."""
    normalize = _check_pipeline(folder)
    try:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ModelNotAvailable("the MiniLM encoder needs: pip install tokenizers safetensors") \
            from e
    cfg = json.loads((folder / "config.json").read_text())
    max_len = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_len)
    tokenizer.no_padding()  # padded per batch in MiniLMEmbedder
    model = MeanPooledBert(cfg)
    state = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors"))
             .items() if not k.endswith("position_ids")}  # a buffer older checkpoints saved
    model.load_state_dict(state, strict=True, assign=True)
    model = model.eval().to(device)
    return MiniLMEmbedder(model, tokenizer, device, cfg["hidden_size"],
                          hash_state_dict(model, prefix=STATE_DICT_PREFIX), normalize)
