"""`GET /items/{key}/thumb`: the evidence thumbnail (JPEG) of an indexed video frame."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from streams.api.errors import ApiError
from streams.api.openapi import RouteSpec

if TYPE_CHECKING:
    from streams.alerting_setup import AlertingService

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/items/{key}/thumb", "JPEG thumbnail of an indexed frame.", "search",
              responses={200: "image/jpeg", 404: "no such item or no thumbnail"}),
)


def install(app: web.Application, service: AlertingService) -> None:
    prefix = f"{service.ctx.settings.topic_prefix}:item:"

    async def thumb(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if not key.startswith(prefix):
            raise ApiError(400, f"item keys start with {prefix!r}; got {key!r}")
        data = await service.ctx.redis.hget(key, "thumb")
        if not data:
            raise ApiError(404, f"item {key} has no thumbnail (not a frame, or expired)")
        return web.Response(body=data, content_type="image/jpeg",
                            headers={"Cache-Control": "max-age=3600"})

    app.router.add_get("/items/{key}/thumb", thumb)
