"""What Lookout indexes a Redis holds: names, vector spaces, item counts, current aliases.

Read by the worker at start (is there an index of another model, dtype or schema version
with items in it?) and by `lookout index status|migrate|reindex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis.asyncio import Redis

from encoders.modality import Modality
from streams.index.naming import IndexRef, index_alias, parse_index_name


@dataclass(frozen=True)
class IndexInfo:
    """One Lookout index as Redis reports it."""

    name: str
    ref: IndexRef
    datatype: str
    dims: int
    docs: int
    key_prefixes: tuple[str, ...]
    percent_indexed: float
    #: The alias of its vector space points at this index.
    current: bool
    #: How its vectors are indexed: `flat`, or `hnsw M=.. EF_CONSTRUCTION=..`.
    algorithm: str = ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _get(info: dict[Any, Any], key: str) -> Any:
    return info.get(key.encode(), info.get(key))


def _vector_attrs(info: dict[Any, Any]) -> tuple[str, int, str]:
    """(datatype, dims, algorithm) of the vector field in an FT.INFO reply ('', 0, '' when
    none); the algorithm with its HNSW build parameters."""
    for attr in _get(info, "attributes") or []:
        if isinstance(attr, list):  # RESP2 without redis-py's parsing: a flat list
            attr = dict(zip(attr[::2], attr[1::2], strict=False))
        if _text(_get(attr, "type")).lower() == "vector":
            algorithm = _text(_get(attr, "algorithm") or "").lower()
            if algorithm == "hnsw":
                algorithm += (f" M={_text(_get(attr, 'M'))} "
                              f"EF_CONSTRUCTION={_text(_get(attr, 'ef_construction'))}")
            return (_text(_get(attr, "data_type")).lower(), int(_get(attr, "dim") or 0),
                    algorithm)
    return "", 0, ""


async def alias_target(client: Redis, alias: str) -> str | None:
    """The index an alias points at, None when the alias does not exist."""
    try:
        info = await client.execute_command("FT.INFO", alias)
    except redis.exceptions.ResponseError:
        return None
    return _text(_get(info, "index_name"))


async def list_indexes(client: Redis, prefix: str,
                       modality: Modality | None = None) -> list[IndexInfo]:
    """Every Lookout index under `prefix` (of `modality` when given), sorted by name."""
    names = sorted(_text(n) for n in await client.execute_command("FT._LIST"))
    out: list[IndexInfo] = []
    aliases: dict[str, str | None] = {}
    for name in names:
        ref = parse_index_name(prefix, name)
        if ref is None or (modality is not None and ref.modality is not Modality(modality)):
            continue
        try:
            info = await client.execute_command("FT.INFO", name)
        except redis.exceptions.ResponseError:  # dropped in between
            continue
        datatype, dims, algorithm = _vector_attrs(info)
        current = False
        if not ref.legacy:
            alias = index_alias(prefix, ref.modality, ref.model, ref.datatype or datatype)
            if alias not in aliases:
                aliases[alias] = await alias_target(client, alias)
            current = aliases[alias] == name
        definition = _get(info, "index_definition") or {}
        prefixes = tuple(_text(p) for p in _get(definition, "prefixes") or [])
        out.append(IndexInfo(name, ref, datatype, dims, int(_get(info, "num_docs") or 0),
                             prefixes, float(_get(info, "percent_indexed") or 0.0), current,
                             algorithm))
    return out
