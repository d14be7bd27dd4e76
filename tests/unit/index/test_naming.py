"""Index names and item keys carry what makes vectors comparable (model incl. preprocessing,
dtype, schema version), and a mismatch names what differs and the command to run."""

from __future__ import annotations

import hashlib
import json

import pytest

from encoders.modality import Modality
from streams.core.errors import IndexStoreError
from streams.index.naming import (
    IndexRef,
    index_alias,
    index_name,
    key_prefix,
    layout,
    mismatch,
    parse_index_name,
    schema_version,
)

LOGS = Modality.LOGS
#: The fields of each schema version. Changing schema.yaml's fields without a new version
#: here (and in schema.yaml) fails: an existing index would silently lack the change.
LAYOUT_DIGESTS = {2: "18787fe801"}


def _digest() -> str:
    fields = {k: v for k, v in layout().items() if k != "version"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def test_the_schema_version_changes_with_the_fields():
    assert LAYOUT_DIGESTS.get(schema_version()) == _digest(), (
        "schema.yaml's fields changed: bump its version and add the new digest here")


def test_names_round_trip_through_parsing():
    name = index_name("t-1", LOGS, "minilm-8cdaccac-p1a2b3c", "float16")
    assert name == f"t-1:idx:logs:minilm-8cdaccac-p1a2b3c:float16:v{schema_version()}"
    assert name.startswith(index_alias("t-1", LOGS, "minilm-8cdaccac-p1a2b3c", "float16") + ":")
    assert parse_index_name("t-1", name) == IndexRef(LOGS, "minilm-8cdaccac-p1a2b3c",
                                                    "float16", schema_version())
    assert key_prefix("t-1", LOGS, "m", "float16") == "t-1:item:logs:m:float16:"


@pytest.mark.parametrize("name", [
    "other:idx:logs:m:float32:v2",      # another deployment
    "t-1:idx:logs:m:float32",           # an alias, not an index
    "t-1:idx:sonar:m:float32:v2",       # not a modality
    "t-1:idx:logs:m:float64:v2",        # not a dtype Lookout writes
    "t-1:idx:logs:m:float32:2",         # no version marker
])
def test_foreign_names_are_not_lookout_indexes(name):
    assert parse_index_name("t-1", name) is None


def test_the_unversioned_names_before_are_read_as_legacy_v1():
    ref = parse_index_name("lookout", "lookout:idx:video:clip-1")
    assert ref == IndexRef(Modality.VIDEO, "clip-1", None, 1) and ref.legacy


def test_an_unknown_dtype_is_refused():
    with pytest.raises(IndexStoreError, match="float32, float16"):
        key_prefix("p", LOGS, "m", "int8")


WANT = IndexRef(LOGS, "m-2", "float16", 2)


@pytest.mark.parametrize(("found", "dtype", "says"), [
    (IndexRef(LOGS, "m-2", "float32", 2), "float32",
     ["float32 vectors instead of LOOKOUT_VECTOR_DTYPE=float16", "lookout index reindex"]),
    (IndexRef(LOGS, "m-1", "float16", 2), "float16",
     ["model m-1 instead of the configured m-2", "lookout index reindex --modality logs"]),
    (IndexRef(LOGS, "m-2", "float16", 1), "float16",
     ["schema v1, this worker writes v2", "lookout index migrate --modality logs"]),
    (IndexRef(LOGS, "m-2", "float16", 3), "float16", ["newer than the v2", "upgrade the worker"]),
    (IndexRef(LOGS, "m-2", None, 1), "float16", ["unversioned layout", "lookout index reindex"]),
])
def test_a_mismatch_says_what_differs_and_what_to_run(found, dtype, says):
    message = mismatch("p:idx:x", found, dtype, WANT)
    assert message is not None and "\n" not in message and "p:idx:x" in message
    for needle in says:
        assert needle in message


def test_the_same_space_and_version_is_no_mismatch():
    assert mismatch("p:idx:x", WANT, "float16", WANT) is None
