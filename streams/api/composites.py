"""`/composites` and `/sites`: composite standing queries over the members' hits, and the
site map that groups sources into places."""

from __future__ import annotations

from aiohttp import web

from streams.alerting.preview import MemberPreview, preview_composite
from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.models import (
    CompositeList,
    CompositePreviewResult,
    CompositeView,
    Deleted,
    ErrorBody,
    PreviewRequest,
)
from streams.api.openapi import Reply, Route, RouteSpec, bind
from streams.api.params import parse_time_ms, validated_as
from streams.core.errors import QueryNotFound
from streams.queries.composite import CompositeQuery, RegisteredComposite
from streams.queries.sites import SiteMap

_NOT_FOUND = {404: Reply("no such composite query", ErrorBody)}
ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("POST", "/composites",
              "Register (or replace) a composite query over registered member queries.",
              "queries", operation_id="registerComposite", body=CompositeQuery,
              responses={200: Reply("replaced", CompositeView),
                         201: Reply("created", CompositeView),
                         400: Reply("unknown or composite members, bad rule", ErrorBody)}),
    RouteSpec("GET", "/composites", "List composite queries.", "queries",
              operation_id="listComposites",
              responses={200: Reply("the composites, by id", CompositeList)}),
    RouteSpec("GET", "/composites/{id}", "Show one composite query.", "queries",
              operation_id="getComposite",
              responses={200: Reply("the composite", CompositeView), **_NOT_FOUND}),
    RouteSpec("DELETE", "/composites/{id}", "Delete a composite query.", "queries",
              operation_id="deleteComposite",
              responses={200: Reply("deleted", Deleted), **_NOT_FOUND}),
    RouteSpec("POST", "/composites/{id}/preview",
              "What the composite would have fired on over retained history.", "queries",
              operation_id="previewComposite", body=PreviewRequest, body_required=False,
              responses={200: Reply("its members' hits and the alerts they would raise",
                                    CompositePreviewResult), **_NOT_FOUND}),
    RouteSpec("PUT", "/sites", "Replace the site map (source globs -> site and labels).",
              "queries", operation_id="putSites", body=SiteMap,
              responses={200: Reply("the site map in force", SiteMap)}),
    RouteSpec("GET", "/sites", "The site map.", "queries", operation_id="getSites",
              responses={200: Reply("the site map in force", SiteMap)}),
)


def routes(service: AlertingService) -> list[Route]:
    registry = service.registry

    def writable() -> None:
        if not registry.started:
            raise ApiError(503, "standing queries are still loading on this worker; retry")

    def found(composite_id: str) -> RegisteredComposite:
        rc = registry.find_composite(composite_id)
        if rc is None:
            raise QueryNotFound(f"no composite query with id {composite_id!r}; see "
                                "`lookout query list`")
        return rc

    async def create(request: web.Request) -> web.Response:
        composite = validated_as(request, CompositeQuery)
        writable()
        existed = registry.find_composite(composite.id) is not None
        rc = await registry.register_composite(composite)
        return web.json_response(rc.summary(), status=200 if existed else 201)

    async def list_composites(request: web.Request) -> web.Response:
        return web.json_response({"composites": [c.summary() for c in registry.composites()]})

    async def show(request: web.Request) -> web.Response:
        return web.json_response(found(request.match_info["id"]).summary())

    async def delete(request: web.Request) -> web.Response:
        composite_id = found(request.match_info["id"]).id
        writable()
        await registry.remove(composite_id)
        await service.policy_states.forget(composite_id)
        return web.json_response({"deleted": composite_id})

    async def preview(request: web.Request) -> web.Response:
        composite = found(request.match_info["id"]).composite
        body = validated_as(request, PreviewRequest)
        since, until = parse_time_ms(body.since, "since"), parse_time_ms(body.until, "until")
        try:
            result = await preview_composite(composite, _members(service, composite),
                                             registry.sites,
                                             means=service.thresholds.source_means,
                                             ts_range=(since, until), limit=body.limit)
        except ValueError as e:  # a member bound to another model than this worker's
            raise ApiError(409, str(e)) from e
        return web.json_response(result)

    async def put_sites(request: web.Request) -> web.Response:
        sites = validated_as(request, SiteMap)
        writable()
        return web.json_response((await registry.put_sites(sites)).model_dump(mode="json"))

    async def get_sites(request: web.Request) -> web.Response:
        return web.json_response(registry.sites.model_dump(mode="json"))

    return bind(ROUTES, {
        ("POST", "/composites"): create, ("GET", "/composites"): list_composites,
        ("GET", "/composites/{id}"): show, ("DELETE", "/composites/{id}"): delete,
        ("POST", "/composites/{id}/preview"): preview,
        ("PUT", "/sites"): put_sites, ("GET", "/sites"): get_sites,
    })


def _members(service: AlertingService, composite: CompositeQuery) -> list[MemberPreview]:
    """Each member's query, hit threshold, encoder and index (409 / 503 when gone)."""
    out = []
    for member in composite.members:
        rq = service.registry.find(member.query_id)
        if rq is None:
            raise ApiError(409, f"member query {member.query_id!r} of {composite.id!r} is gone")
        modality = rq.query.modality
        store = service.index_stores.get(modality)
        if store is None:
            raise ApiError(503, f"this worker has no {modality} index yet; retry when ready")
        threshold = (member.hit_threshold if member.hit_threshold is not None
                     else service.thresholds.threshold_of(rq))
        out.append(MemberPreview(rq, threshold, service.registry.encoder(modality), store))
    return out
