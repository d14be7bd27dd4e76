"""Sites: source globs to places, first match in the order given, globs as everywhere."""

from __future__ import annotations

import pytest

from streams.core.errors import QueryValidationError
from streams.queries.sites import group_of, load_sites_file, parse_sites

DOC = {"sites": {"lobby": ["cam-lobby", "mic-lobby", "door-*"],
                 "server-room": {"sources": ["db-*", "mic-server"], "labels": {"floor": "2"}},
                 "everything-else": ["*"]}}


def test_first_matching_site_in_the_order_given():
    sites = parse_sites(DOC)
    assert sites.site_of("door-3").name == "lobby"
    assert sites.site_of("db-1").name == "server-room"
    assert sites.site_of("DOOR-3").name == "everything-else"  # globs are case-sensitive


def test_group_of_site_source_and_label():
    sites = parse_sites(DOC)
    assert group_of("site", "mic-server", sites) == "server-room"
    assert group_of("source", "mic-server", sites) == "mic-server"
    assert group_of("label:floor", "db-7", sites) == "2"
    assert group_of("label:floor", "cam-lobby", sites) is None
    assert group_of("site", "cam-lobby", parse_sites(None)) is None


def test_bad_site_maps_are_refused(tmp_path):
    with pytest.raises(QueryValidationError, match="source globs must be non-empty"):
        parse_sites({"sites": {"lobby": [" "]}})
    with pytest.raises(QueryValidationError, match="sites.0.sources"):
        parse_sites({"sites": {"lobby": []}})
    path = tmp_path / "sites.yaml"
    path.write_text("- lobby\n")
    with pytest.raises(QueryValidationError, match="expected 'sites:'"):
        load_sites_file(path)
    path.write_text("sites:\n  lobby: [cam-lobby]\n")
    assert load_sites_file(path).sites[0].sources == ["cam-lobby"]
