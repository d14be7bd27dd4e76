"""`/queries`: register, list, show, change, delete and preview standing queries."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streams.alerting.preview import best_matches, coarse_histogram, preview_query
from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.models import (
    Deleted,
    ErrorBody,
    ExplainQuery,
    ExplainResult,
    PreviewRequest,
    PreviewResult,
    QueryChanges,
    QueryList,
    QueryListQuery,
    QueryView,
)
from streams.api.openapi import Reply, Route, RouteSpec, bind
from streams.api.params import parse_time_ms, validated_as
from streams.queries.model import RegisteredQuery, StandingQuery

_VIEW = {200: Reply("the query", QueryView), 404: Reply("no such query", ErrorBody)}
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", "/queries", "Register (or replace) a standing query.", "queries",
              operation_id="registerQuery", body=StandingQuery,
              responses={200: Reply("replaced", QueryView), 201: Reply("created", QueryView),
                         413: Reply("more examples than one Kafka record holds", ErrorBody)}),
    RouteSpec("GET", "/queries", "List standing queries.", "queries",
              operation_id="listQueries", query=QueryListQuery,
              responses={200: Reply("the queries, by id", QueryList)}),
    RouteSpec("GET", "/queries/{id}", "Show one standing query.", "queries",
              operation_id="getQuery", responses=_VIEW),
    RouteSpec("PATCH", "/queries/{id}", "Change threshold, sources, enabled, ... of a query.",
              "queries", operation_id="changeQuery", body=QueryChanges, responses=_VIEW),
    RouteSpec("DELETE", "/queries/{id}", "Delete a standing query.", "queries",
              operation_id="deleteQuery",
              responses={200: Reply("deleted", Deleted), 404: Reply("no such query", ErrorBody)}),
    RouteSpec("GET", "/queries/{id}/explain",
              "How the threshold in force was chosen: background histogram, threshold, "
              "best recent matches.", "queries", operation_id="explainQuery",
              query=ExplainQuery, responses={200: Reply("the explanation", ExplainResult),
                                             404: Reply("no such query", ErrorBody)}),
    RouteSpec("POST", "/queries/{id}/preview",
              "What the query would have matched and fired on retained history.", "queries",
              operation_id="previewQuery", body=PreviewRequest, body_required=False,
              responses={200: Reply("matches and the alerts they would raise", PreviewResult),
                         404: Reply("no such query", ErrorBody)}),
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
        query = validated_as(request, StandingQuery)
        writable()
        existed = registry.find(query.id) is not None
        rq = await registry.register(query)
        matrix, store = registry.matrix(query.modality), service.index_stores.get(query.modality)
        if matrix is not None and store is not None and rq.id in matrix.query_ids:
            await thresholds.seed(rq, matrix, store)
        return web.json_response(describe(rq), status=200 if existed else 201)

    async def list_queries(request: web.Request) -> web.Response:
        modality = validated_as(request, QueryListQuery).modality
        return web.json_response(
            {"queries": [describe(q) for q in registry.all(modality)]})

    async def show(request: web.Request) -> web.Response:
        rq = registry.get(request.match_info["id"])
        return web.json_response({**describe(rq),
                                  "feedback": await service.feedback.summary(rq.id)})

    async def patch(request: web.Request) -> web.Response:
        writable()
        changes = validated_as(request, QueryChanges).model_dump(mode="json", exclude_unset=True)
        rq = await registry.update_settings(request.match_info["id"], changes)
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
        body = validated_as(request, PreviewRequest)
        since, until = parse_time_ms(body.since, "since"), parse_time_ms(body.until, "until")
        modality = rq.query.modality
        store = service.index_stores.get(modality)
        if store is None:
            raise ApiError(503, f"this worker has no {modality} index yet; retry when ready")
        try:
            result = await preview_query(rq, registry.encoder(modality), store,
                                         threshold=thresholds.threshold_of(rq),
                                         means=thresholds.source_means,
                                         ts_range=(since, until), limit=body.limit)
        except ValueError as e:
            raise ApiError(409, str(e)) from e
        return web.json_response(result)

    async def explain(request: web.Request) -> web.Response:
        rq = registry.get(request.match_info["id"])
        params = validated_as(request, ExplainQuery)
        bins, k = params.bins, params.k
        store = service.index_stores.get(rq.query.modality)
        if store is None:
            raise ApiError(503, f"this worker has no {rq.query.modality} index yet; retry")
        hist = await thresholds.histogram(rq)
        best = await best_matches(rq, registry.encoder(rq.query.modality), store,
                                  means=thresholds.source_means, k=k)
        return web.json_response({
            "query_id": rq.id, **thresholds.describe(rq),
            "histogram": coarse_histogram(hist, bins), "best_matches": best})

    return preview, explain
