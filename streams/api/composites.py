"""`/composites` and `/sites`: composite standing queries over the members' hits, and the
site map that groups sources into places."""

from __future__ import annotations

from aiohttp import web

from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.models import CompositeList, CompositeView, Deleted, ErrorBody
from streams.api.openapi import Reply, Route, RouteSpec, bind
from streams.api.params import validated_as
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

    async def put_sites(request: web.Request) -> web.Response:
        sites = validated_as(request, SiteMap)
        writable()
        return web.json_response((await registry.put_sites(sites)).model_dump(mode="json"))

    async def get_sites(request: web.Request) -> web.Response:
        return web.json_response(registry.sites.model_dump(mode="json"))

    return bind(ROUTES, {
        ("POST", "/composites"): create, ("GET", "/composites"): list_composites,
        ("GET", "/composites/{id}"): show, ("DELETE", "/composites/{id}"): delete,
        ("PUT", "/sites"): put_sites, ("GET", "/sites"): get_sites,
    })
