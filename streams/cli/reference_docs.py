"""Renders docs/cli.md and docs/api.md from the code, so the user-facing reference cannot drift.

    python -m streams.cli.reference_docs cli > docs/cli.md
    python -m streams.cli.reference_docs api > docs/api.md

Unit tests fail when the committed files differ from what this renders.
"""

from __future__ import annotations

import sys

import click

CLI_HEADER = """# CLI reference

`lookout` is installed into `.venv/bin/` by `make setup`. Every command reads `LOOKOUT_*`
settings ([configuration.md](configuration.md)); a usage mistake prints one line on stderr
and exits 2, any other Lookout error prints one line and exits 1. Commands that talk to a
worker take `--api URL` (default `http://<web_host>:<web_port>`) and send
`LOOKOUT_API_TOKEN` as a bearer token.

Generated from the click commands by `python -m streams.cli.reference_docs cli`.
"""

API_HEADER = """# HTTP API reference

Every worker serves this API on `LOOKOUT_WEB_HOST:LOOKOUT_WEB_PORT` (default
`127.0.0.1:6066`); `GET /openapi.json` returns the same as OpenAPI 3. Errors are JSON,
`{"error": "<what to fix>", "status": 4xx}`: a field of the wrong type or out of range, an
unknown field or parameter, or a parameter given twice is a 400 naming it; too many examples
or too large a query is a 413; a body over 1 MiB is a 413; a method a path does not serve is
a 405 with `Allow`. Request lines over 65,536 bytes are refused by the HTTP server itself
(400, plain text): send long text in a `POST /search` body. The parameters, bodies and
responses of each operation, with their types: `GET /openapi.json`, generated from the
models that validate the requests. When the server listens beyond loopback, every
route marked *token* needs `Authorization: Bearer $LOOKOUT_API_TOKEN`. Request and response
details, the alert record and the SSE format: [alerting.md](alerting.md). The web console
(`GET /`, no token needed to load it): [console.md](console.md).

Generated from the route specs by `python -m streams.cli.reference_docs api`.

| method | path | operationId | token | what it does | query parameters |
|---|---|---|---|---|---|
"""


def _walk(
    cmd: click.Command, path: list[str], parent: click.Context | None
) -> list[tuple[list[str], click.Command, click.Context]]:
    """Every command with the context a real invocation gives it (inherited help options)."""
    ctx = cmd.make_context(
        path[-1], [], parent=parent, resilient_parsing=True,
        terminal_width=100, max_content_width=100,
    )
    out = [(path, cmd, ctx)]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            out.extend(_walk(cmd.commands[name], [*path, name], ctx))
    return out


def render_cli() -> str:
    from streams.cli import cli

    parts = [CLI_HEADER]
    for path, cmd, ctx in _walk(cli, ["lookout"], None):
        if cmd.hidden:
            continue
        parts.append(f"\n## `{' '.join(path)}`\n\n```text\n{cmd.get_help(ctx)}\n```\n")
    return "".join(parts)


def all_route_specs() -> list:
    from streams.api import alerts, composites, console, items, queries, search, status
    from streams.api.openapi import HEALTH_ROUTES

    return [*HEALTH_ROUTES, *status.ROUTES, *queries.ROUTES, *composites.ROUTES, *search.ROUTES,
            *alerts.ROUTES, *items.ROUTES, *console.ROUTES]


def render_api() -> str:
    rows = [
        f"| {s.method} | `{s.path}` | `{s.op_id}` | {'token' if s.auth else '-'} | {s.summary} | "
        f"{', '.join(f'`{p}`' for p in s.query_params) or '-'} |"
        for s in all_route_specs()
    ]
    return API_HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    renderers = {"cli": render_cli, "api": render_api}
    if which not in renderers:
        sys.exit("usage: python -m streams.cli.reference_docs cli|api")
    print(renderers[which](), end="")
