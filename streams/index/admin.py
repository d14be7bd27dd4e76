"""`lookout index migrate|reindex|drop`: move a deployment's retained items to the index
this code writes, without losing them and without a stop of the readers.

- migrate: a new schema version of the same vector space (same model and dtype) needs no
  new vectors: the new index is created over the same keys, Redis indexes them, then the
  space's alias is switched in one FT.ALIASUPDATE. The old index stays until dropped.
- reindex: another model or dtype needs new vectors under new keys. Another dtype of the
  same model converts the stored vectors; another model re-embeds what Lookout keeps of
  the raw content (a log line's text, an alerted audio chunk as sent). Frames keep only a
  thumbnail, and other audio items only a lossy, downsampled listening clip
  (`LOOKOUT_AUDIO_CLIP_FORMAT`, e.g. Opus at 8 kHz): neither is what the model saw, so
  neither is re-embedded (a new model's vectors of them would silently be worse); the
  plan and the counts say so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from redis.asyncio import Redis

from encoders.errors import EncoderInputError
from encoders.modality import Modality
from streams.core.errors import IndexMismatch
from streams.index.catalog import IndexInfo, list_indexes
from streams.index.naming import mismatch, schema_version
from streams.index.params import VectorIndexParams
from streams.index.store import VECTOR_FIELD, IndexStore

if TYPE_CHECKING:  # torch: not loaded by `lookout index status|migrate|drop`
    from encoders.base import Encoder

Progress = Callable[[int, int], None]
"""(done, total) after each step."""

#: What each modality keeps of the raw content: (payload field, content-type field).
RAW_CONTENT: dict[Modality, tuple[str, str | None] | None] = {
    Modality.LOGS: ("text", None),
    Modality.AUDIO: ("clip", "clip_type"),
    Modality.VIDEO: None,
}
WHY_NOT: dict[Modality, str] = {
    Modality.VIDEO: "frames keep only their vector and a thumbnail, not the frame the model "
                    "saw",
    Modality.AUDIO: "only audio items that raised an alert keep their chunk as sent; the "
                    "others keep a lossy, downsampled listening clip "
                    "(LOOKOUT_AUDIO_CLIP_FORMAT), not what the model saw, and are not "
                    "re-embedded from it",
    Modality.LOGS: "",
}
BATCH = 256


@dataclass
class Plan:
    """What a migrate or reindex does (or did, when not a dry run)."""

    source: IndexInfo | None
    target: str
    steps: list[str] = field(default_factory=list)
    #: False: nothing to do (the steps say why).
    needed: bool = True
    done: bool = False
    counts: dict[str, int] = field(default_factory=dict)


def migration_targets(client: Redis, prefix: str, indexes: Sequence[IndexInfo],
                      params: VectorIndexParams | None = None) -> list[IndexStore]:
    """One target per vector space whose newest index is older than this code's schema
    version: its model and dims come from that index, so no encoder needs loading; the new
    index is built with `params` (LOOKOUT_INDEX_*: a migration is a rebuild anyway)."""
    spaces: dict[str, IndexInfo] = {}
    for info in indexes:
        if not info.ref.legacy and info.docs > 0:
            best = spaces.get(info.ref.space())
            if best is None or info.ref.version > best.ref.version:
                spaces[info.ref.space()] = info
    return [IndexStore(client, prefix=prefix, modality=i.ref.modality,
                       model_short_id=i.ref.model, dims=i.dims, datatype=i.datatype,
                       params=params)
            for i in spaces.values() if i.ref.version < schema_version()]


def _newest_other(indexes: Sequence[IndexInfo], target: IndexStore) -> IndexInfo | None:
    """The index holding this modality's items that is not the target: the current one of
    the target's space first, then the one with the most items."""
    others = [i for i in indexes if i.name != target.name and i.docs > 0]
    return max(others, key=lambda i: (i.ref.space() == target.space, i.current, i.docs),
               default=None)


async def plan_migrate(client: Redis, target: IndexStore) -> Plan:
    """Is there an older schema version of the target's vector space to migrate from?"""
    indexes = await list_indexes(client, target.prefix, target.modality)
    mine = next((i for i in indexes if i.name == target.name), None)
    source = _newest_other(indexes, target)
    plan = Plan(source, target.name)
    if source is None or (mine is not None and mine.current):
        plan.steps.append(f"nothing to migrate: {target.name} is current" if mine else
                          f"nothing to migrate: no {target.modality.value} items in Redis")
        plan.needed = False
        return plan
    problem = mismatch(source.name, source.ref, source.datatype, target.ref)
    if problem is not None and "migrate" not in problem:
        raise IndexMismatch(f"cannot migrate, the vectors differ: {problem}")
    if mine is None:
        plan.steps.append(f"create {target.name} over the {source.docs} items under "
                          f"{target.key_prefix} (no re-embedding)")
    plan.steps.append(f"point {target.alias} at {target.name} (was {source.name})")
    plan.steps.append(f"{source.name} stays until `lookout index drop {source.name}`")
    return plan


async def migrate(client: Redis, target: IndexStore, *, dry_run: bool = False,
                  progress: Progress | None = None, poll_s: float = 0.2) -> Plan:
    """Create the target index over the source's keys, wait until Redis has indexed them
    all, then switch the alias (atomically: readers see one index or the other)."""
    plan = await plan_migrate(client, target)
    if dry_run or plan.source is None or not plan.needed:
        return plan
    if not await target.index.exists():
        await target.index.create(overwrite=False)
    total = plan.source.docs
    while True:
        info = next(i for i in await list_indexes(client, target.prefix, target.modality)
                    if i.name == target.name)
        if progress is not None:
            progress(min(info.docs, total), total)
        if info.percent_indexed >= 1.0:
            break
        await asyncio.sleep(poll_s)
    await client.execute_command("FT.ALIASUPDATE", target.alias, target.name)
    plan.counts = {"indexed": info.docs}
    plan.done = True
    return plan


async def _source_keys(client: Redis, source: IndexInfo) -> list[str]:
    """Every item key of the source (legacy prefixes also cover newer keys: skip those)."""
    keys: list[str] = []
    for prefix in source.key_prefixes:
        async for raw in client.scan_iter(match=f"{prefix}*", count=1000):
            key = raw.decode() if isinstance(raw, bytes) else raw
            if len(key[len(prefix):].split(":")) == 3:  # <topic>:<partition>:<offset>
                keys.append(key)
    return sorted(keys)


def _target_key(source: IndexInfo, key: str, target: IndexStore) -> str:
    prefix = next(p for p in source.key_prefixes if key.startswith(p))
    return target.key_prefix + key[len(prefix):]


async def plan_reindex(client: Redis, target: IndexStore, source_name: str | None = None
                       ) -> tuple[Plan, list[str]]:
    """Which index to read, how (convert or re-embed) and why some items cannot move."""
    indexes = await list_indexes(client, target.prefix, target.modality)
    source = (next((i for i in indexes if i.name == source_name), None) if source_name
              else _newest_other([i for i in indexes if i.ref.space() != target.space
                                  or i.ref.legacy], target))
    if source_name and source is None:
        raise IndexMismatch(f"no Lookout index {source_name} (see `lookout index status`)")
    plan = Plan(source, target.name)
    if source is None:
        plan.steps.append(f"nothing to reindex: no other {target.modality.value} index holds "
                          "items")
        plan.needed = False
        return plan, []
    keys = await _source_keys(client, source)
    converting = source.ref.model == target.model
    how = (f"convert {source.datatype} vectors to {target.datatype}" if converting
           else f"re-embed with {target.model}")
    plan.steps.append(f"{how}: {len(keys)} items of {source.name} -> {target.key_prefix}* "
                      f"(index {target.name})")
    if not converting and RAW_CONTENT[target.modality] is None:
        plan.steps.append(f"cannot re-embed: {WHY_NOT[target.modality]}; {target.name} starts "
                          "empty and fills with new records")
    elif not converting and target.modality is Modality.AUDIO:
        plan.steps.append(f"re-embeds only part: {WHY_NOT[target.modality]}")
    plan.steps.append(f"{source.name} and its items stay until they expire or "
                      f"`lookout index drop {source.name}`")
    return plan, keys


async def reindex(client: Redis, target: IndexStore, encoder: Encoder | None, *,
                  source_name: str | None = None, dry_run: bool = False,
                  progress: Progress | None = None) -> Plan:
    """Write the source's items under the target's keys with vectors of the target's space
    (TTL kept), into the target index, and make that index its space's current one."""
    plan, keys = await plan_reindex(client, target, source_name)
    if dry_run or plan.source is None:
        return plan
    if not await target.index.exists():
        await target.index.create(overwrite=False)
    await target.client.execute_command("FT.ALIASUPDATE", target.alias, target.name)
    counts = {"moved": 0, "skipped": 0}
    converting = plan.source.ref.model == target.model
    if converting or RAW_CONTENT[target.modality] is not None:
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            moved = await _move(client, plan.source, batch, target,
                                None if converting else encoder)
            counts["moved"] += moved
            counts["skipped"] += len(batch) - moved
            if progress is not None:
                progress(start + len(batch), len(keys))
    else:
        counts["skipped"] = len(keys)
    if counts["skipped"] and not converting:
        plan.steps.append(f"{counts['skipped']} items not re-embedded: "
                          f"{WHY_NOT[target.modality] or 'no raw content kept'}")
    plan.counts, plan.done = counts, True
    return plan


async def _move(client: Redis, source: IndexInfo, keys: list[str], target: IndexStore,
                encoder: Encoder | None) -> int:
    """Copy one batch to the target space: new vectors, same fields and TTL."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
        pipe.pttl(key)
    replies = await pipe.execute()
    rows = [({_s(k): v for k, v in raw.items()}, ttl, key)
            for key, raw, ttl in zip(keys, replies[::2], replies[1::2], strict=True) if raw]
    vectors = (_converted(rows, source.datatype) if encoder is None
               else await asyncio.to_thread(_embedded, rows, encoder, target.modality))
    pipe = client.pipeline(transaction=False)
    moved = 0
    for (fields, ttl, key), vector in zip(rows, vectors, strict=True):
        if vector is None:
            continue
        new_key = _target_key(source, key, target)
        fields = {**fields, "model": target.model,
                  VECTOR_FIELD: target.vector_bytes(vector)}
        pipe.hset(new_key, mapping=fields)
        if isinstance(ttl, int) and ttl > 0:
            pipe.pexpire(new_key, ttl)
        moved += 1
    await pipe.execute()
    return moved


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _converted(rows: list[tuple[dict[str, Any], Any, str]], datatype: str
               ) -> list[np.ndarray | None]:
    dtype = np.float16 if datatype == "float16" else np.float32
    return [np.frombuffer(f[VECTOR_FIELD], dtype=dtype).astype(np.float32)
            if f.get(VECTOR_FIELD) else None for f, _, _ in rows]


def _embedded(rows: list[tuple[dict[str, Any], Any, str]], encoder: Encoder,
              modality: Modality) -> list[np.ndarray | None]:
    """Re-embed the raw content each row kept (None where it kept none or it fails)."""
    spec = RAW_CONTENT[modality]
    assert spec is not None
    payload_field, type_field = spec
    slots: list[int] = []
    decoded: list[Any] = []
    for i, (fields, _, _) in enumerate(rows):
        payload = fields.get(payload_field)
        if not payload or (modality is Modality.AUDIO and not _as_sent(fields)):
            continue
        ctype = _s(fields[type_field]) if type_field and type_field in fields else "text/plain"
        try:
            decoded.append(encoder.decode(bytes(payload), ctype))
        except EncoderInputError:
            continue
        slots.append(i)
    out: list[np.ndarray | None] = [None] * len(rows)
    if decoded:
        vectors = encoder.encode(decoded).detach().to("cpu").float().numpy()
        for slot, vector in zip(slots, vectors, strict=True):
            out[slot] = vector
    return out


def _as_sent(fields: dict[str, Any]) -> bool:
    """An audio item's clip is the chunk as sent (kept when it raised an alert) when its
    type is the record's own; a listening clip (Opus, Vorbis, 16-bit PCM at the clip
    rate) has the type it was encoded to."""
    clip_type, sent_type = fields.get("clip_type"), fields.get("content_type")
    return clip_type is not None and sent_type is not None and _s(clip_type) == _s(sent_type)


async def drop(client: Redis, prefix: str, name: str, *, force: bool = False) -> IndexInfo:
    """FT.DROPINDEX without its items (they expire with their TTL); the current index of a
    space only with `force` (its readers would fail)."""
    info = next((i for i in await list_indexes(client, prefix) if i.name == name), None)
    if info is None:
        raise IndexMismatch(f"no Lookout index {name} under prefix {prefix!r} "
                            "(see `lookout index status`)")
    if info.current and not force:
        raise IndexMismatch(f"{name} is the current index of its vector space (workers search "
                            "it): migrate or reindex first, or pass --force")
    await client.execute_command("FT.DROPINDEX", name)
    return info


__all__ = ["Plan", "drop", "migrate", "migration_targets", "plan_migrate", "plan_reindex",
           "reindex"]
