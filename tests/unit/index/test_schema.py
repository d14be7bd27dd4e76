"""The Redis index layout (index_schema.yaml) as redisvl sees it, per modality and model."""

from __future__ import annotations

import pytest
from redisvl.schema import IndexSchema

from encoders.modality import Modality
from streams.core.errors import IndexStoreError
from streams.core.wire import item_key
from streams.index.naming import index_name, key_prefix
from streams.index.store import build_schema, stored_fields


@pytest.mark.parametrize("modality", list(Modality))
def test_schema_has_the_documented_fields(modality):
    schema = IndexSchema.from_dict(
        build_schema(prefix="lookout", modality=modality, short_id="m-1", dims=384))
    fields = schema.fields
    assert fields["source"].type == "tag"
    assert fields["model"].type == "tag"
    assert fields["ts"].type == "numeric" and fields["ts"].attrs.sortable
    vec = fields["embedding"]
    assert vec.type == "vector"
    assert vec.attrs.dims == 384
    assert vec.attrs.algorithm.value.lower() == "hnsw"
    assert vec.attrs.distance_metric.value.lower() == "cosine"
    assert ("text" in fields) == (modality is Modality.LOGS)
    if modality is Modality.LOGS:
        assert fields["text"].type == "text"


@pytest.mark.parametrize(
    ("prefix", "modality", "dtype", "name", "key_start"),
    [
        ("lookout", Modality.VIDEO, "float32", "lookout:idx:video:m-1:float32:v2",
         "lookout:item:video:m-1:float32:"),
        ("t-123", Modality.LOGS, "float16", "t-123:idx:logs:m-1:float16:v2",
         "t-123:item:logs:m-1:float16:"),
    ],
)
def test_names_follow_the_redis_layout(prefix, modality, dtype, name, key_start):
    schema = IndexSchema.from_dict(
        build_schema(prefix=prefix, modality=modality, short_id="m-1", dims=8, datatype=dtype))
    assert schema.index.name == index_name(prefix, modality, "m-1", dtype) == name
    assert schema.index.prefix == key_prefix(prefix, modality, "m-1", dtype) == key_start
    assert schema.index.storage_type.value == "hash"
    # Every item key of the vector space falls under the index's key prefix.
    assert item_key(modality, f"{prefix}.x", 2, 7, prefix=prefix,
                    space=f"m-1:{dtype}").startswith(key_start)


def test_float16_vectors_and_bad_dims():
    schema = IndexSchema.from_dict(
        build_schema(prefix="p", modality=Modality.AUDIO, short_id="a", dims=64,
                     datatype="float16"))
    assert schema.fields["embedding"].attrs.datatype.value.lower() == "float16"
    with pytest.raises(IndexStoreError, match="dims"):
        build_schema(prefix="p", modality=Modality.AUDIO, short_id="a", dims=0)


def test_frames_store_a_thumbnail_and_every_item_its_origin():
    assert "thumb" in stored_fields(Modality.VIDEO)
    assert "thumb" not in stored_fields(Modality.LOGS)
    for modality in Modality:
        assert {"source", "ts", "model", "embedding", "topic", "partition", "offset"} <= set(
            stored_fields(modality))
