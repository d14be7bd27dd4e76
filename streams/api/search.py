"""`GET|POST /search`: items seen so far, nearest to a text or an example, with filters."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import torch
from aiohttp import web

from encoders.errors import EncoderInputError, NoTextSpace
from encoders.modality import Modality
from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.openapi import Route, RouteSpec, bind
from streams.api.params import (
    json_body,
    parse_float,
    parse_int,
    parse_modality,
    parse_sources,
    parse_time_ms,
)
from streams.core.sources import matches as source_matches
from streams.core.sources import redis_prefilter
from streams.ingest.records import evidence_of

SEARCH_PARAMS = ("modality", "text", "item_key", "sources", "since", "until", "k", "min_score")
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/search", "Search indexed items by text.", "search",
              query_params=SEARCH_PARAMS),
    RouteSpec("POST", "/search",
              "Search by text or example (JSON payload_b64, or multipart field `example`).",
              "search", request_body={"type": "object", "properties": {
                  p: {"type": "string"} for p in (*SEARCH_PARAMS, "payload_b64", "content_type")
              }}),
)


async def _read_request(request: web.Request) -> tuple[dict[str, Any], bytes | None]:
    """Parameters from the query string, JSON body or multipart form; plus example bytes."""
    params: dict[str, Any] = dict(request.query)
    payload: bytes | None = None
    if request.method != "POST":
        return params, None
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if part.name == "example":
                payload = bytes(await part.read())
                params.setdefault("content_type", part.headers.get("Content-Type"))
            elif part.name:
                params[part.name] = await part.text()
        if payload is not None and not payload:
            raise ApiError(400, "the uploaded example is empty")
        return params, payload
    params.update(await json_body(request))
    if params.get("payload_b64"):
        try:
            payload = base64.b64decode(str(params["payload_b64"]), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "payload_b64 is not valid base64") from None
        if not payload:
            raise ApiError(400, "payload_b64 decodes to nothing; send the example's bytes")
    return params, payload


async def pattern_vector(
    service: AlertingService, modality: Modality, params: dict[str, Any], payload: bytes | None
) -> torch.Tensor:
    """Embed the one pattern a search names: text, example bytes or an indexed item."""
    encoder = service.registry.encoder(modality)
    text = params.get("text")
    given = [n for n, v in (("text", text), ("example", payload),
                            ("item_key", params.get("item_key"))) if v]
    if len(given) != 1:
        raise ApiError(400, "give exactly one of text, an example (payload_b64 or multipart "
                            f"field 'example') or item_key; got {given or 'none'}")
    run = service.inference.run
    if text is not None and str(text).strip():
        try:
            return (await run(encoder.encode_text, [str(text)]))[0]
        except NoTextSpace as e:
            raise ApiError(400, f"text search on {modality}: {e}") from e
    if payload is not None:
        try:
            return await run(encoder.embed_example, payload, params.get("content_type"))
        except EncoderInputError as e:
            raise ApiError(400, f"unreadable example: {e}") from e
    item = await service.lookup_item(modality, str(params["item_key"]))
    if item is None:
        raise ApiError(404, f"item {params['item_key']} is not in the {modality} index")
    return torch.as_tensor(item.vector)


def routes(service: AlertingService) -> list[Route]:
    async def search(request: web.Request) -> web.Response:
        params, payload = await _read_request(request)
        modality = parse_modality(params.get("modality"))
        k = parse_int(params.get("k"), "k", 10, 1, 1000)
        min_score = parse_float(params.get("min_score"), "min_score", -1.0, 1.0)
        sources = parse_sources(params.get("sources"))
        ts_range = (parse_time_ms(params.get("since"), "since"),
                    parse_time_ms(params.get("until"), "until"))
        store = service.index_stores.get(modality)
        if store is None:
            raise ApiError(503, f"this worker has no {modality} index yet; retry when ready")
        vector = await pattern_vector(service, modality, params, payload)
        hits = await store.knn(vector, k, sources=redis_prefilter(sources), ts_range=ts_range)
        hits = [h for h in hits if source_matches(h.source, sources)]
        if min_score is not None:
            hits = [h for h in hits if h.score >= min_score]
        results = [{"key": h.key, "score": round(h.score, 6), "source": h.source, "ts": h.ts_ms,
                    "evidence": evidence_of(modality, h.key, h.text)} for h in hits]
        return web.json_response({"modality": modality.value, "model": store.model,
                                  "results": results})

    return bind(ROUTES, {("GET", "/search"): search, ("POST", "/search"): search})
