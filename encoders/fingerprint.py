"""Model fingerprints: name + short hash of the weights, so a new checkpoint gets a new index."""

from __future__ import annotations

import hashlib
import os
import threading
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


def hash_state_dict(module: torch.nn.Module, length: int = 8) -> str:
    """blake2b over parameter/buffer names, shapes and bytes (independent of the file format)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:length]


def model_id(name: str, weights_hash: str) -> str:
    """`<name>@<hash>`: human readable first, unique by weights."""
    return f"{name}@{weights_hash}"
