"""`/queries`: register, list, show, change, delete and preview standing queries."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streams.alerting.preview import best_matches, coarse_histogram, preview_query
from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.openapi import Route, RouteSpec, bind
from streams.api.params import json_body, parse_int, parse_modality, parse_time_ms
from streams.queries.model import RegisteredQuery, StandingQuery, parse_query

QUERY_SCHEMA = {"type": "object", "description": "A standing query (see docs: standing queries)",
                "required": ["name", "modality", "positives"]}

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", "/queries", "Register (or replace) a standing query.", "queries",
              request_body=QUERY_SCHEMA, responses={200: "replaced", 201: "created"}),
    RouteSpec("GET", "/queries", "List standing queries.", "queries", query_params=("modality",)),
    RouteSpec("GET", "/queries/{id}", "Show one standing query.", "queries"),
    RouteSpec("PATCH", "/queries/{id}", "Change threshold, sources, enabled, ... of a query.",
              "queries", request_body={"type": "object"}),
    RouteSpec("DELETE", "/queries/{id}", "Delete a standing query.", "queries"),
    RouteSpec("GET", "/queries/{id}/explain",
              "How the threshold in force was chosen: background histogram, threshold, "
              "best recent matches.", "queries", query_params=("bins", "k")),
    RouteSpec("POST", "/queries/{id}/preview",
              "What the query would have matched and fired on retained history.", "queries",
              request_body={"type": "object", "properties": {
                  "since": {"type": "string"}, "until": {"type": "string"},
                  "limit": {"type": "integer"}}}),
)


def routes(service: AlertingService) -> list[Route]:
    registry = service.registry
    thresholds = service.thresholds

    def describe(rq: RegisteredQuery) -> dict[str, Any]:
        return {**registry.describe(rq), **thresholds.describe(rq)}

    def writable() -> None:
        if not registry.started:
            raise ApiError(503, "standing queries are still loading on this worker; retry")

    async def create(request: web.Request) -> web.Response:
        body = await json_body(request)
        if "modality" in body:
            parse_modality(body["modality"])  # the clearer message for a bad modality
        query: StandingQuery = parse_query(body)
        writable()
        existed = registry.find(query.id) is not None
        rq = await registry.register(query)
        matrix, store = registry.matrix(query.modality), service.index_stores.get(query.modality)
        if matrix is not None and store is not None and rq.id in matrix.query_ids:
            await thresholds.seed(rq, matrix, store)
        return web.json_response(describe(rq), status=200 if existed else 201)

    async def list_queries(request: web.Request) -> web.Response:
        raw = request.query.get("modality")
        modality = parse_modality(raw) if raw else None
        return web.json_response(
            {"queries": [describe(q) for q in registry.all(modality)]})

    async def show(request: web.Request) -> web.Response:
        rq = registry.get(request.match_info["id"])
        return web.json_response({**describe(rq),
                                  "feedback": await service.feedback.summary(rq.id)})

    async def patch(request: web.Request) -> web.Response:
        writable()
        rq = await registry.update_settings(request.match_info["id"], await json_body(request))
        return web.json_response(describe(rq))

    async def delete(request: web.Request) -> web.Response:
        query_id = request.match_info["id"]
        writable()
        await registry.remove(query_id)
        await service.policy_states.forget(query_id)
        await thresholds.forget(query_id)
        return web.json_response({"deleted": query_id})

    preview, explain = _history_handlers(service)
    return bind(ROUTES, {
        ("POST", "/queries"): create, ("GET", "/queries"): list_queries,
        ("GET", "/queries/{id}"): show, ("PATCH", "/queries/{id}"): patch,
        ("DELETE", "/queries/{id}"): delete, ("POST", "/queries/{id}/preview"): preview,
        ("GET", "/queries/{id}/explain"): explain,
    })


def _history_handlers(service: AlertingService) -> tuple[Any, Any]:
    """`preview` and `explain`: a query against the retained items and its background."""
    registry, thresholds = service.registry, service.thresholds

    async def preview(request: web.Request) -> web.Response:
        rq = registry.get(request.match_info["id"])
        body = await json_body(request, required=False)
        since = parse_time_ms(body.get("since", request.query.get("since")), "since")
        until = parse_time_ms(body.get("until", request.query.get("until")), "until")
        limit = parse_int(body.get("limit", request.query.get("limit")), "limit", 200, 1, 10_000)
        modality = rq.query.modality
        store = service.index_stores.get(modality)
        if store is None:
            raise ApiError(503, f"this worker has no {modality} index yet; retry when ready")
        try:
            result = await preview_query(rq, registry.encoder(modality), store,
                                         threshold=thresholds.threshold_of(rq),
                                         ts_range=(since, until), limit=limit)
        except ValueError as e:
            raise ApiError(409, str(e)) from e
        return web.json_response(result)

    async def explain(request: web.Request) -> web.Response:
        rq = registry.get(request.match_info["id"])
        bins = parse_int(request.query.get("bins"), "bins", 40, 5, 400)
        k = parse_int(request.query.get("k"), "k", 5, 0, 100)
        store = service.index_stores.get(rq.query.modality)
        if store is None:
            raise ApiError(503, f"this worker has no {rq.query.modality} index yet; retry")
        hist = await thresholds.histogram(rq)
        best = await best_matches(rq, registry.encoder(rq.query.modality), store, k=k)
        return web.json_response({
            "query_id": rq.id, **thresholds.describe(rq),
            "histogram": coarse_histogram(hist, bins), "best_matches": best})

    return preview, explain
