"""The console's static files: served open (they hold no data) with a strict CSP, free of
inline code, and written so that data never reaches the page as HTML."""

from __future__ import annotations

import asyncio
import json
import re
from html.parser import HTMLParser

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.api import auth, console
from streams.api.errors import error_middleware
from streams.cli.reference_docs import all_route_specs

TOKEN = "s3cret"


def _app() -> web.Application:
    app = web.Application(middlewares=[error_middleware,
                                       auth.bearer_token_middleware(TOKEN)])
    for route in console.routes(token_required=True, grafana_url="https://grafana.example"):
        app.router.add_route(route.spec.method, route.spec.path, route.handler)

    async def guarded(_: web.Request) -> web.Response:
        return web.json_response({"queries": []})

    app.router.add_get("/queries", guarded)
    return app


async def _get(paths: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    async with TestClient(TestServer(_app())) as client:
        out = []
        for path in paths:
            resp = await client.get(path)
            out.append((resp.status, dict(resp.headers), await resp.read()))
        return out


def test_the_page_and_its_files_are_served_without_a_token_with_a_strict_policy():
    page, script, style, config, api = asyncio.run(_get(
        ["/", "/console/console.js", "/console/console.css", "/console/config.json",
         "/queries"]))
    assert [page[0], script[0], style[0], config[0]] == [200, 200, 200, 200]
    assert json.loads(config[2]) == {"token_required": True,  # ask before the first call
                                     "grafana_url": "https://grafana.example"}
    assert api[0] == 401  # the data behind the page still needs the token
    types = [h["Content-Type"].split(";")[0] for _, h, _ in (page, script, style)]
    assert types == ["text/html", "text/javascript", "text/css"]
    for _, headers, _ in (page, script, style):
        policy = dict(d.strip().split(" ", 1) for d in
                      headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
        assert policy["style-src"] == "'self'"
        assert policy["img-src"] == "'self' data: blob:"
        assert policy["media-src"] == "'self' blob:"
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert page[2] == console.asset("index.html")


def test_open_paths_are_exactly_the_routes_documented_without_auth():
    assert {s.path for s in all_route_specs() if not s.auth} == set(auth.OPEN_PATHS)


class _InlineCode(HTMLParser):
    """Collects what the CSP would block: inline scripts, style elements and attributes,
    event-handler attributes, and every URL the page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []
        self.loads: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.blocked += [f"{tag} {k}" for k in named if k == "style" or k.startswith("on")]
        if tag == "style":
            self.blocked.append("<style>")
        if tag == "script":
            self._in_script = True
            if not named.get("src"):
                self.blocked.append("inline <script>")
        self.loads += [v for k, v in named.items() if k in ("src", "href") and v]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.blocked.append("inline script text")


def test_the_page_has_no_inline_code_and_loads_only_its_own_files():
    parser = _InlineCode()
    parser.feed(console.asset("index.html").decode())
    assert parser.blocked == []
    files = [u for u in parser.loads if not u.startswith("#")]
    assert sorted(files) == ["/console/console.css", "/console/console.js", "data:,"]


def test_the_script_never_builds_html_from_strings():
    script = console.asset("console.js").decode()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "localStorage", "document.cookie"):
        assert sink not in code, sink
    # the token travels in a header only, never in a URL
    assert re.search(r"[?&]token=", code) is None
    assert 'credentials: "omit"' in code
