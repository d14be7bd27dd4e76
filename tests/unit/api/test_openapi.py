"""`/openapi.json` is generated from the models that validate the requests: typed, required
fields marked, every operation named, media types declared, and valid OpenAPI 3.1."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from streams.api.models import SearchQuery
from streams.api.openapi import RouteSpec, build_openapi
from streams.cli.reference_docs import all_route_specs
from streams.queries.model import StandingQuery


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_openapi(all_route_specs(), title="Lookout worker API", version="1")


def _schema(doc: dict[str, Any], ref_holder: dict[str, Any]) -> dict[str, Any]:
    return doc["components"]["schemas"][ref_holder["$ref"].rsplit("/", 1)[-1]]


def _ops(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in doc["paths"].items() for m, op in item.items()]


def test_the_document_is_valid_openapi(doc):
    validate(doc)


def test_every_operation_has_a_unique_operation_id_and_an_error_response(doc):
    ids = [op["operationId"] for _, _, op in _ops(doc)]
    assert len(ids) == len(set(ids)) == len(all_route_specs())
    for _, _, op in _ops(doc):
        error = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert _schema(doc, error)["required"] == ["error", "status"]


def test_search_parameters_are_typed_and_modality_is_required(doc):
    params = {p["name"]: p for p in doc["paths"]["/search"]["get"]["parameters"]}
    assert set(params) == set(SearchQuery.model_fields)
    assert params["modality"]["required"] is True
    assert not any(p["required"] for n, p in params.items() if n != "modality")
    assert params["k"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                                     "default": 10, "description": params["k"]["description"]}
    types = {s.get("type") for s in params["min_score"]["schema"]["anyOf"]}
    assert types == {"number", "null"}


def test_query_body_is_the_standing_query_model(doc):
    body = doc["paths"]["/queries"]["post"]["requestBody"]
    assert body["required"] is True
    schema = _schema(doc, body["content"]["application/json"]["schema"])
    assert set(schema["properties"]) == set(StandingQuery.model_fields)
    assert set(schema["required"]) == {"name", "modality", "positives"}  # id: from the name
    assert schema["properties"]["positives"]["maxItems"] == 64
    assert schema["additionalProperties"] is False


def test_the_multipart_example_upload_is_declared(doc):
    content = doc["paths"]["/search"]["post"]["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]
    assert form["properties"]["example"]["contentMediaType"] == "application/octet-stream"
    assert "modality" in form["properties"]


@pytest.mark.parametrize(("method", "path", "media_type"), [
    ("get", "/alerts/stream", "text/event-stream"),
    ("get", "/metrics", "text/plain"),
    ("get", "/items/{key}/thumb", "image/jpeg"),
    ("get", "/search", "application/json"),
    ("get", "/queries", "application/json"),
    ("post", "/queries", "application/json"),
    ("get", "/alerts", "application/json"),
])
def test_responses_declare_their_media_type_and_schema(doc, method, path, media_type):
    ok = doc["paths"][path][method]["responses"]
    ok = ok.get("200") or ok["201"]
    assert list(ok["content"]) == [media_type]
    assert ok["content"][media_type]["schema"]


def test_json_responses_of_the_main_endpoints_have_properties(doc):
    for path, method, field in [("/search", "get", "results"), ("/queries", "get", "queries"),
                                ("/alerts", "get", "alerts"), ("/readyz", "get", "ready")]:
        ref = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        assert field in _schema(doc, ref["schema"])["required"], path


def test_a_spec_without_a_handler_is_refused():
    from streams.api.openapi import bind

    async def handler(_):  # pragma: no cover - never called
        raise AssertionError

    with pytest.raises(ValueError, match="routes and specs differ"):
        bind([RouteSpec("GET", "/a", "A.")], {("GET", "/b"): handler})
