"""Log lines: payload decoding, masking of volatile tokens, and a bounded embedding cache.

Masking maps every instance of one log template ("disk 93% full on node 10.0.0.7") to
one text, so the same template gets one vector and one cache entry.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from .content_types import media_type
from .errors import EncoderInputError

log = logging.getLogger(__name__)

MAX_LOG_CHARS = 4096
SHARED_RETRY_S = 30
"""How long a failing shared cache is left alone before it is tried again."""
_TEXT_TYPES = frozenset({"text/plain", ""})
_JSON_TYPES = frozenset({"application/json"})

# Order matters: the widest patterns run first so their digits are not masked piecemeal.
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?\b"
        ),
        "<ts>",
    ),
    (re.compile(r"\b\d{4}[-/]\d{2}[-/]\d{2}\b"), "<date>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<time>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "<ip>"),
    (re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){3,7}[0-9a-fA-F]{1,4}\b"), "<ip>"),
    (re.compile(r"\b(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\b"), "<mac>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    # Hex ids: 8+ hex characters with a digit and a letter (plain words and numbers stay).
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    # Numbers with optional unit suffix (15ms, 93%, 2.5GB); not digits glued to letters (sda1).
    (
        re.compile(r"(?<![A-Za-z0-9_<])[-+]?\d+(?:\.\d+)?(?:[A-Za-z%]{1,3})?(?![A-Za-z0-9_>])"),
        "<num>",
    ),
)
_SPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


# One cheap test per mask, in `_MASKS` order, that holds whenever its pattern can match the
# text: a substring every match contains (or a digit). A regex pass costs microseconds even
# when nothing matches; these cost tens of nanoseconds, and skipping a pass that cannot
# match leaves the result as it was, so the masks (and the recipe) stay the same.
_MAY_MATCH: tuple[Callable[[str], bool], ...] = (
    lambda t: "-" in t and ":" in t,  # <ts>: 2024-05-01T12:00
    lambda t: "-" in t or "/" in t,  # <date>
    lambda t: ":" in t,  # <time>
    lambda t: "-" in t,  # <uuid>
    lambda t: "." in t,  # <ip> v4
    lambda t: ":" in t,  # <ip> v6
    lambda t: ":" in t,  # <mac>
    lambda t: "0x" in t,  # <hex> 0x...
    _has_digit,  # <hex> ids hold a digit
    _has_digit,  # <num>
)
_MASK_STEPS = tuple(zip(_MAY_MATCH, _MASKS, strict=True))


def log_recipe() -> dict[str, object]:
    """What shapes a log line before the model sees it (masks, their order, the length cap):
    part of every log encoder's model id, so a changed mask makes a new index."""
    return {"masks": [[p.pattern, placeholder] for p, placeholder in _MASKS],
            "space": _SPACE.pattern, "max_chars": MAX_LOG_CHARS}


def normalise_log(text: str) -> str:
    """Mask volatile tokens (timestamps, UUIDs, IPs, hex ids, numbers) and squeeze spaces."""
    for may_match, (pattern, placeholder) in _MASK_STEPS:
        if may_match(text):
            text = pattern.sub(placeholder, text)
    # str.split() and the regex `\s` agree on what is whitespace: the same as
    # `_SPACE.sub(" ", text).strip()`, in one C call.
    return " ".join(text.split())[:MAX_LOG_CHARS]


def decode_log(payload: bytes, content_type: str | None = None) -> str:
    """One log record -> its message text; JSON records must carry a string `message`."""
    if not payload:
        raise EncoderInputError("empty log payload (0 bytes)")
    kind = media_type(content_type)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EncoderInputError(f"log line is not valid UTF-8 (byte {e.start})") from e
    if kind in _JSON_TYPES:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise EncoderInputError(f"invalid JSON log record: {e.msg} at char {e.pos}") from e
        if not isinstance(record, dict) or not isinstance(record.get("message"), str):
            raise EncoderInputError('JSON log record needs a string field "message"')
        text = record["message"]
    elif kind not in _TEXT_TYPES:
        raise EncoderInputError(
            f"unsupported log content-type {kind!r}: send text/plain or application/json"
        )
    text = text.strip()
    if not text:
        raise EncoderInputError("log line is blank")
    return text


class SharedVectors(Protocol):
    """A second-level vector store keyed like `EmbeddingCache`, shared by every worker of a
    deployment (Redis in the worker: `streams.index.vector_cache`). It lets a restarted or
    newly added worker start with the templates its group has already embedded instead
    of paying for each again in its first seconds. Vectors go in and come out as float32
    on the CPU; a store that fails raises, and the cache then computes as if it missed."""

    def get_many(self, keys: Sequence[str]) -> list[torch.Tensor | None]: ...

    def put_many(self, items: dict[str, torch.Tensor]) -> None: ...


class EmbeddingCache:
    """Bounded LRU of vectors keyed by normalised text; thread-safe (API + inference lanes).

    With a `shared` store, misses are looked up there before they are computed, and a key
    computed here is written there the second time this process sees it: recurring
    templates get shared, while a stream of all-distinct lines writes nothing.
    """

    def __init__(self, max_entries: int = 50_000, device: torch.device | None = None) -> None:
        self.max_entries = max_entries
        self.device = device or torch.device("cpu")
        self.shared: SharedVectors | None = None
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._unshared: set[str] = set()  # computed here, not yet written to `shared`
        self._lock = threading.Lock()
        self._shared_down_until = 0.0
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._unshared.clear()

    def embed(
        self, keys: Sequence[str], compute: Callable[[list[str]], torch.Tensor]
    ) -> torch.Tensor:
        """Vectors for `keys`, computing only the distinct misses (in one call)."""
        found, to_share = self._lookup(keys)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            from_shared = self._from_shared(missing)
            found |= from_shared
            missing = [k for k in missing if k not in from_shared]
        if missing:
            fresh = compute(missing)
            self._remember(dict(zip(missing, fresh, strict=True)), computed=True)
            found |= dict(zip(missing, fresh, strict=True))
        if to_share:
            self._to_shared({k: found[k] for k in to_share})
        return torch.stack([found[k] for k in keys])

    def _lookup(self, keys: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Local hits, and those among them due to be shared (their second sighting)."""
        found: dict[str, torch.Tensor] = {}
        to_share: list[str] = []
        with self._lock:
            for k in keys:
                v = self._items.get(k)
                if v is not None:
                    self._items.move_to_end(k)
                    found[k] = v
                    if k in self._unshared:
                        self._unshared.discard(k)
                        to_share.append(k)
            self.hits += sum(1 for k in keys if k in found)
        return found, to_share

    def _remember(self, vectors: dict[str, torch.Tensor], *, computed: bool) -> None:
        with self._lock:
            if computed:
                self.misses += len(vectors)
            else:
                self.shared_hits += len(vectors)
            if self.max_entries <= 0:
                return
            for k, v in vectors.items():
                self._items[k] = v
                self._items.move_to_end(k)
                if computed and self.shared is not None:
                    self._unshared.add(k)
            while len(self._items) > self.max_entries:
                evicted, _ = self._items.popitem(last=False)
                self._unshared.discard(evicted)

    def _shared_usable(self) -> SharedVectors | None:
        return self.shared if time.monotonic() >= self._shared_down_until else None

    def _shared_failed(self, doing: str, exc: Exception) -> None:
        """A failing store is skipped for a while: encoding never waits on it repeatedly."""
        self._shared_down_until = time.monotonic() + SHARED_RETRY_S
        log.warning("shared embedding cache: %s failed (%s); computing without it for %d s",
                    doing, exc, SHARED_RETRY_S)

    def _from_shared(self, keys: list[str]) -> dict[str, torch.Tensor]:
        shared = self._shared_usable()
        if shared is None:
            return {}
        try:
            got = shared.get_many(keys)
        except Exception as e:  # a cache outage must not stop encoding
            self._shared_failed("reading", e)
            return {}
        out = {k: v.to(self.device) for k, v in zip(keys, got, strict=True) if v is not None}
        if out:
            self._remember(out, computed=False)
        return out

    def _to_shared(self, vectors: dict[str, torch.Tensor]) -> None:
        shared = self._shared_usable()
        if shared is None:
            return
        try:
            shared.put_many({k: v.detach().float().cpu() for k, v in vectors.items()})
        except Exception as e:  # a cache outage must not stop encoding
            self._shared_failed("writing", e)
