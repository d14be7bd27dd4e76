"""Redis names that carry what makes two vectors comparable, and what to do when they differ.

Vectors are comparable only when the same model (weights and preprocessing: the encoder's
short id), stored as the same dtype, wrote them; an index is usable as is only when it also
has the layout (schema version) this worker writes. So (docs/redis-layout.md):

- items of a vector space live under `<prefix>:item:<modality>:<model>:<dtype>:`,
- its index is `<prefix>:idx:<modality>:<model>:<dtype>:v<schema version>`,
- the alias `<prefix>:idx:<modality>:<model>:<dtype>` names the current one.

A migration to a new schema version creates the new index over the same keys and switches
the alias; a new model or dtype needs new vectors (a reindex). Before this, index names
carried the model only and keys neither, so a float16 switch read float32 vectors as
garbage and a new encoder's index back-filled vectors of another model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from encoders.modality import Modality
from streams.core.errors import IndexStoreError
from streams.core.wire import item_key_prefix

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")
DATATYPES = ("float32", "float16")
#: The unversioned layout before names carried the dtype and the schema version: index
#: `<prefix>:idx:<modality>:<model>`, items `<prefix>:item:<modality>:<topic>:...`.
LEGACY_VERSION = 1
_VERSION = re.compile(r"^v([0-9]{1,6})$")


@cache
def layout() -> dict[str, Any]:
    """`schema.yaml`: the fields of every index and the schema version they make."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_version() -> int:
    """The layout version this code writes (bump it with every change to the fields)."""
    return int(layout()["version"])


@dataclass(frozen=True)
class IndexRef:
    """What an index name says: modality, model short id, vector dtype (None: legacy
    layout, read it from the index) and schema version."""

    modality: Modality
    model: str
    datatype: str | None
    version: int

    @property
    def legacy(self) -> bool:
        return self.datatype is None

    def space(self) -> str:
        """`<model>:<dtype>`: vectors are comparable within one space only."""
        return f"{self.model}:{self.datatype}"


def index_name(prefix: str, modality: Modality, model: str, datatype: str,
               version: int | None = None) -> str:
    """`<prefix>:idx:<modality>:<model>:<dtype>:v<version>` (default: this code's version)."""
    v = schema_version() if version is None else int(version)
    return f"{index_alias(prefix, modality, model, datatype)}:v{v}"


def index_alias(prefix: str, modality: Modality, model: str, datatype: str) -> str:
    """`<prefix>:idx:<modality>:<model>:<dtype>`: the current index of one vector space."""
    return f"{prefix}:idx:{Modality(modality).value}:{model}:{_dtype(datatype)}"


def key_prefix(prefix: str, modality: Modality, model: str, datatype: str) -> str:
    """Hash keys of one vector space start with this; the schema version is not in it, so
    a migration indexes the same hashes again (`streams.core.wire.item_key_prefix`)."""
    return item_key_prefix(modality, f"{model}:{_dtype(datatype)}", prefix=prefix)


def modality_index_prefix(prefix: str, modality: Modality) -> str:
    """Every index name of `modality` (any model, dtype or version) starts with this."""
    return f"{prefix}:idx:{Modality(modality).value}:"


def parse_index_name(prefix: str, name: str) -> IndexRef | None:
    """The `IndexRef` of a Lookout index name under `prefix`, None for anything else
    (another deployment's prefix, an alias, a foreign index)."""
    head = f"{prefix}:idx:"
    if not name.startswith(head):
        return None
    parts = name[len(head):].split(":")
    try:
        modality = Modality(parts[0])
    except ValueError:
        return None
    if len(parts) == 2 and parts[1]:
        return IndexRef(modality, parts[1], None, LEGACY_VERSION)
    version = _VERSION.match(parts[3]) if len(parts) == 4 else None
    if version is None or parts[2] not in DATATYPES or not parts[1]:
        return None
    return IndexRef(modality, parts[1], parts[2], int(version.group(1)))


def _dtype(datatype: str) -> str:
    if datatype not in DATATYPES:
        raise IndexStoreError(
            f"vector dtype must be one of {', '.join(DATATYPES)}, not {datatype!r}")
    return datatype


def mismatch(name: str, found: IndexRef, found_dtype: str, want: IndexRef) -> str | None:
    """One line for an operator when index `name` (with items in it) is not the one this
    worker writes (`want`): what differs and the command that resolves it; None when they
    agree. `found_dtype` is the dtype read from the index (legacy names lack it)."""
    what = f"Redis index {name} holds {found.modality.value} items"
    differs = []
    if found.model != want.model:
        differs.append(f"model {found.model} instead of the configured {want.model}")
    if found_dtype != want.datatype:
        differs.append(f"{found_dtype} vectors instead of LOOKOUT_VECTOR_DTYPE={want.datatype}")
    command = f"lookout index reindex --modality {want.modality.value}"
    if differs or found.legacy:
        if not differs:
            differs.append(f"the unversioned layout v{LEGACY_VERSION} (keys without model and "
                           "dtype)")
        return f"{what} with {'; '.join(differs)}: run `{command}` (or configure what it " \
               "was built for)"
    if found.version < want.version:
        return (f"{what} in schema v{found.version}, this worker writes v{want.version}: run "
                f"`lookout index migrate --modality {want.modality.value}` (no re-embedding)")
    if found.version > want.version:
        return (f"{what} in schema v{found.version}, newer than the v{want.version} this "
                "worker writes: upgrade the worker")
    return None
