"""The Lookout console: one static page (HTML, a JavaScript module, CSS) served by every worker.

The page holds no data: it calls the same API as the CLI, with the bearer token the person
typed in (kept in the tab's sessionStorage, sent as an `Authorization` header, never in a
URL or a cookie), so serving it needs no token. Every response carries a strict
Content-Security-Policy: scripts and styles only from these files, no inline code, images
only from the worker or `blob:` (thumbnails are fetched with the token, then shown).
"""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

from streams.api.openapi import Handler, Reply, Route, RouteSpec, bind

#: The page's own policy; the JS and CSS files carry it too (harmless, and uniform).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the installed version; revalidating is cheap (they are small).
    "Cache-Control": "no-cache",
}
#: path -> (file under streams/api/static, media type)
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html"),
    "/console/console.js": ("console.js", "text/javascript"),
    "/console/console.css": ("console.css", "text/css"),
}
CONFIG_PATH = "/console/config.json"
PATHS = frozenset(ASSETS) | {CONFIG_PATH}
ROUTES: tuple[RouteSpec, ...] = (
    *(RouteSpec("GET", path, f"The Lookout console: {name}.", "console", auth=False,
                operation_id=f"console_{name.replace('.', '_')}",
                responses={200: Reply(name, media_type=media, schema={"type": "string"})})
      for path, (name, media) in ASSETS.items()),
    RouteSpec("GET", CONFIG_PATH, "What the console needs to know before its first API call.",
              "console", auth=False, operation_id="console_config",
              responses={200: Reply("token_required: whether API calls need the bearer token; "
                                    "grafana_url: where the Lookout dashboards are (or null)",
                                    schema={"type": "object", "properties": {
                                        "token_required": {"type": "boolean"},
                                        "grafana_url": {"type": ["string", "null"]}}})}),
)


def asset(name: str) -> bytes:
    """A console file's bytes (package data)."""
    return files("streams.api").joinpath("static", name).read_bytes()


def routes(*, token_required: bool, grafana_url: str | None = None) -> list[Route]:
    """One handler per file (the bytes are read once, here) and the page's configuration:
    whether to ask for the token before calling the API (so a first call is not a 401), and
    the Grafana to link the status view to (`LOOKOUT_GRAFANA_URL`)."""
    handlers = {("GET", path): _serve(asset(name), media)
                for path, (name, media) in ASSETS.items()}

    async def config(_: web.Request) -> web.Response:
        return web.json_response({"token_required": token_required, "grafana_url": grafana_url},
                                 headers=SECURITY_HEADERS)

    return bind(ROUTES, {**handlers, ("GET", CONFIG_PATH): config})


def _serve(body: bytes, media_type: str) -> Handler:
    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type=media_type, charset="utf-8",
                            headers=SECURITY_HEADERS)

    return serve
