"""`lookout sites apply|list`: which site (place) each source belongs to."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from streams.api.client import ApiClient, api_option
from streams.cli.common import load_settings, print_json
from streams.queries.sites import SiteMap, load_sites_file


def _print_sites(sites: SiteMap) -> None:
    table = Table("site", "sources", "labels")
    for site in sites.sites:
        table.add_row(site.name, ", ".join(site.sources),
                      ", ".join(f"{k}={v}" for k, v in site.labels.items()))
    Console().print(table)


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.group("sites")
    def sites() -> None:
        """Sites: source globs to places, what composite queries group hits by."""

    @sites.command("apply")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def apply(path: str, as_json: bool, api_url: str | None) -> None:
        """Replace the site map with a sites.yaml file (`sites: {name: [globs]}`)."""
        declared = load_sites_file(path)  # refuse a bad file before calling the worker
        client = ApiClient.from_settings(load_settings(), api_url)
        result = SiteMap.model_validate(client.call("PUT", "/sites",
                                                    declared.model_dump(mode="json")))
        if as_json:
            print_json(result.model_dump(mode="json"))
        else:
            click.echo(f"applied {len(result.sites)} sites from {path}")

    @sites.command("list")
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def list_(as_json: bool, api_url: str | None) -> None:
        """The site map in force, in the order its globs are tried."""
        client = ApiClient.from_settings(load_settings(), api_url)
        result = SiteMap.model_validate(client.call("GET", "/sites"))
        if as_json:
            print_json(result.model_dump(mode="json"))
        else:
            _print_sites(result)
