"""docs/cli.md and docs/api.md are rendered from the code; the committed copies must match."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.cli.reference_docs import all_route_specs, render_api, render_cli

DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.mark.parametrize(
    ("name", "render"), [("cli.md", render_cli), ("api.md", render_api)], ids=["cli", "api"]
)
def test_reference_doc_matches_the_code(name, render):
    kind = name.removesuffix(".md")
    assert (DOCS / name).read_text() == render(), (
        f"docs/{name} is stale: run `python -m streams.cli.reference_docs {kind} > docs/{name}`"
    )


def test_every_route_in_design_is_served():
    served = {(s.method, s.path) for s in all_route_specs()}
    for route in [
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json"),
        ("POST", "/queries"), ("GET", "/queries"), ("GET", "/queries/{id}"),
        ("PATCH", "/queries/{id}"), ("DELETE", "/queries/{id}"),
        ("POST", "/queries/{id}/preview"), ("GET", "/search"), ("POST", "/search"),
        ("GET", "/alerts"), ("GET", "/alerts/stream"), ("GET", "/items/{key}/thumb"),
    ]:
        assert route in served


def test_health_and_metrics_never_need_the_token():
    open_routes = {s.path for s in all_route_specs() if not s.auth}
    assert {"/healthz", "/readyz", "/metrics"} <= open_routes
