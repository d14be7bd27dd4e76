"""Model fingerprints: name + short hash of the weights and of the front-end recipe, so a new
checkpoint or a changed preprocessing (sample rate, image size, normalisation, log masks)
gets a new index: vectors from two recipes are not comparable even with the same weights."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

import torch

_FILE_HASHES: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def hash_file(path: str | Path, length: int = 8) -> str:
    """blake2b of a checkpoint file, cached per (path, size, mtime) for this process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        cached = _FILE_HASHES.get(key)
    if cached is None:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        cached = h.hexdigest()
        with _LOCK:
            _FILE_HASHES[key] = cached
    return cached[:length]


def hash_state_dict(module: torch.nn.Module, length: int = 8, prefix: str = "") -> str:
    """blake2b over parameter/buffer names, shapes and bytes (independent of the file format).
    `prefix` goes before every name: the names another loader gives the same weights (see
    `encoders.minilm.STATE_DICT_PREFIX`)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict(prefix=prefix).items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def recipe_hash(recipe: Mapping[str, object], length: int = 6) -> str:
    """blake2b of a front-end recipe (every parameter that shapes the model's input), in a
    canonical JSON spelling: the same parameters give the same hash in every process."""
    text = json.dumps(recipe, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:length]


def model_id(name: str, weights_hash: str, recipe: Mapping[str, object] | None = None) -> str:
    """`<name>@<weights hash>-p<recipe hash>`: human readable first, unique by weights and
    preprocessing (`-p...` only when the family declares a recipe: the `null` encoder hashes
    raw bytes and has none)."""
    base = f"{name}@{weights_hash}"
    return f"{base}-p{recipe_hash(recipe)}" if recipe else base
