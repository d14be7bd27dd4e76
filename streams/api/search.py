"""`GET|POST /search`: items seen so far, nearest to a text or an example, with filters."""

from __future__ import annotations

import base64
import binascii

import torch
from aiohttp import BodyPartReader, web
from multidict import MultiDict

from encoders.errors import EncoderInputError, NoTextSpace
from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.models import SearchBody, SearchQuery, SearchResults
from streams.api.openapi import Reply, Route, RouteSpec, bind
from streams.api.params import parse_time_ms, read_strings, validated_as
from streams.core.sources import matches as source_matches
from streams.core.sources import redis_prefilter
from streams.ingest.records import evidence_of

_RESULTS = {200: Reply("nearest items first", SearchResults)}
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/search", "Search indexed items by text or by an indexed item.", "search",
              operation_id="searchGet", query=SearchQuery, responses=_RESULTS),
    RouteSpec("POST", "/search",
              "Search by text or example (JSON payload_b64, or multipart field `example`).",
              "search", operation_id="search", body=SearchBody, form=SearchQuery,
              files=("example",), responses=_RESULTS),
)


async def _read_request(request: web.Request) -> tuple[SearchQuery, bytes | None, str | None]:
    """The validated parameters, the example's bytes and their content type, from the query
    string, the JSON body or a multipart form (text fields plus the file part `example`)."""
    if request.method != "POST":
        return validated_as(request, SearchQuery), None, None
    if not request.content_type.startswith("multipart/"):
        body = validated_as(request, SearchBody)
        return body, _decode_b64(body.payload_b64), body.content_type
    fields: MultiDict[str] = MultiDict()
    payload: bytes | None = None
    content_type: str | None = None
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "nested multipart bodies are not supported")
        if part.name == "example":
            payload = bytes(await part.read())
            content_type = part.headers.get("Content-Type")
        elif part.name:
            fields.add(part.name, await part.text())
    if payload is not None and not payload:
        raise ApiError(400, "the uploaded example is empty")
    return read_strings(fields, SearchQuery, "form fields"), payload, content_type


def _decode_b64(data: str | None) -> bytes | None:
    if data is None:
        return None
    try:
        payload = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "payload_b64 is not valid base64") from None
    if not payload:
        raise ApiError(400, "payload_b64 decodes to nothing; send the example's bytes")
    return payload


def check_one_pattern(params: SearchQuery, payload: bytes | None) -> None:
    given = [n for n, v in (("text", params.text), ("example", payload),
                            ("item_key", params.item_key)) if v is not None]
    if len(given) != 1:
        raise ApiError(400, "give exactly one of text, an example (payload_b64 or multipart "
                            f"field 'example') or item_key; got {given or 'none'}")


async def pattern_vector(
    service: AlertingService, params: SearchQuery, payload: bytes | None,
    content_type: str | None,
) -> torch.Tensor:
    """Embed the one pattern a search names: text, example bytes or an indexed item."""
    modality = params.modality
    encoder = service.registry.encoder(modality)
    run = service.inference.run
    if params.text is not None:
        try:
            return (await run(encoder.encode_text, [params.text]))[0]
        except NoTextSpace as e:
            raise ApiError(400, f"text search on {modality}: {e}") from e
    if payload is not None:
        try:
            return await run(encoder.embed_example, payload, content_type)
        except EncoderInputError as e:
            raise ApiError(400, f"unreadable example: {e}") from e
    key = str(params.item_key)
    item = await service.lookup_item(modality, key)
    if item is None:
        raise ApiError(404, f"item {key} is not in the {modality} index")
    return torch.as_tensor(item.vector)


def routes(service: AlertingService) -> list[Route]:
    async def search(request: web.Request) -> web.Response:
        params, payload, content_type = await _read_request(request)
        check_one_pattern(params, payload)
        modality, sources, min_score = params.modality, params.sources, params.min_score
        ts_range = (parse_time_ms(params.since, "since"), parse_time_ms(params.until, "until"))
        store = service.index_stores.get(modality)
        if store is None:
            raise ApiError(503, f"this worker has no {modality} index yet; retry when ready")
        vector = await pattern_vector(service, params, payload, content_type)
        hits = await store.knn(vector, params.k, sources=redis_prefilter(sources),
                               ts_range=ts_range)
        hits = [h for h in hits if source_matches(h.source, sources)]
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        results = [{"key": h.key, "score": round(h.score, 6), "source": h.source, "ts": h.ts_ms,
                    "evidence": evidence_of(modality, h.key, h.text, "clip_type" in h.fields)}
                   for h in hits]
        return web.json_response({"modality": modality.value, "model": store.model,
                                  "results": results})

    return bind(ROUTES, {("GET", "/search"): search, ("POST", "/search"): search})
