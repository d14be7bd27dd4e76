"""How the vector field is built (LOOKOUT_INDEX_*): validated settings that reach the
schema redisvl creates; everything else about the layout stays schema.yaml's."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redisvl.schema import IndexSchema

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.errors import IndexStoreError
from streams.index.params import VectorIndexParams
from streams.index.store import build_schema, schema_differences, vector_build


def _schema(params: VectorIndexParams | None = None) -> IndexSchema:
    return IndexSchema.from_dict(build_schema(prefix="p", modality=Modality.LOGS,
                                              short_id="m", dims=384, params=params))


def test_the_default_is_hnsw_as_before_searched_wider_and_the_index_name_does_not_change():
    default, explicit = _schema(), _schema(VectorIndexParams("hnsw", 16, 200, 50))
    vec = default.fields["embedding"].attrs
    assert vec.algorithm.value.lower() == "hnsw"
    assert (vec.m, vec.ef_construction, vec.ef_runtime) == (16, 200, 50)
    assert default.to_dict() == explicit.to_dict()
    assert default.index.name == "p:idx:logs:m:float32:v2"  # existing deployments keep it


def test_hnsw_parameters_and_flat_reach_the_schema():
    vec = _schema(VectorIndexParams("hnsw", m=8, ef_construction=100)).fields["embedding"]
    assert (vec.attrs.m, vec.attrs.ef_construction) == (8, 100)
    flat = _schema(VectorIndexParams("flat")).fields["embedding"].attrs
    assert flat.algorithm.value.lower() == "flat" and not hasattr(flat, "m")
    assert flat.dims == 384 and flat.distance_metric.value.lower() == "cosine"


def test_an_algorithm_change_is_told_apart_from_a_layout_change():
    hnsw, flat = _schema(), _schema(VectorIndexParams("flat"))
    assert schema_differences(flat, hnsw, algorithm=False) == []
    assert schema_differences(flat, hnsw) == [
        "field embedding: vector 384 float32 flat cosine instead of vector 384 float32 hnsw "
        "cosine"]
    assert vector_build(flat) == VectorIndexParams("flat")
    assert vector_build(_schema(VectorIndexParams("hnsw", 8, 100))) == VectorIndexParams(
        "hnsw", 8, 100)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"algorithm": "svs-vamana"}, "must be one of hnsw, flat"),
    ({"m": 0}, "m must be positive"),
    ({"ef_runtime": 0}, "ef_runtime must be positive"),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(IndexStoreError, match=message):
        VectorIndexParams(**kwargs)


def test_settings_carry_the_parameters_and_refuse_what_redis_cannot_build(monkeypatch):
    monkeypatch.setenv("LOOKOUT_INDEX_ALGORITHM", "flat")
    monkeypatch.setenv("LOOKOUT_INDEX_HNSW_EF_RUNTIME", "64")
    params = VectorIndexParams.from_settings(Settings())
    assert params == VectorIndexParams("flat", 16, 200, 64)
    assert not params.hnsw and params.field_attrs() == {"algorithm": "flat"}
    for name, value in (("algorithm", "svs-vamana"), ("hnsw_m", "1"),
                        ("hnsw_ef_construction", "0"), ("hnsw_ef_runtime", "5000")):
        with pytest.raises(ValidationError, match=f"index_{name}"):
            Settings(**{f"index_{name}": value})


def test_the_settings_defaults_are_the_codes(monkeypatch):
    for name in ("ALGORITHM", "HNSW_M", "HNSW_EF_CONSTRUCTION", "HNSW_EF_RUNTIME"):
        monkeypatch.delenv(f"LOOKOUT_INDEX_{name}", raising=False)
    assert VectorIndexParams.from_settings(Settings()) == VectorIndexParams()
