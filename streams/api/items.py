"""`GET /items/{key}/thumb`: the evidence thumbnail (JPEG) of an indexed video frame."""

from __future__ import annotations

from aiohttp import web

from streams.alerting.service import AlertingService
from streams.api.errors import ApiError
from streams.api.models import ErrorBody
from streams.api.openapi import Reply, Route, RouteSpec, bind

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/items/{key}/thumb", "JPEG thumbnail of an indexed frame.", "search",
              operation_id="getThumbnail",
              responses={200: Reply("the thumbnail", media_type="image/jpeg",
                                    schema={"type": "string", "contentMediaType": "image/jpeg"}),
                         404: Reply("no such item or no thumbnail", ErrorBody)}),
)


def routes(service: AlertingService) -> list[Route]:
    stores = service.index_stores

    async def thumb(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        store = next((s for s in stores.values() if key.startswith(s.key_prefix)), None)
        if store is None:
            prefixes = sorted(s.key_prefix for s in stores.values())
            raise ApiError(404, f"no such item: item keys start with one of {prefixes}; "
                                f"got {key!r}")
        data = await store.thumbnail(key)
        if not data:
            raise ApiError(404, f"item {key} has no thumbnail (not a frame, or expired)")
        return web.Response(
            body=data, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    return bind(ROUTES, {("GET", "/items/{key}/thumb"): thumb})
