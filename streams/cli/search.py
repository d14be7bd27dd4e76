"""`lookout search`: find what was seen, by text or example, through a worker's API."""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from encoders.modality import MODALITIES
from streams.api.client import ApiClient, api_option
from streams.cli.common import evidence_label, load_settings, print_json


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.command("search")
    @click.argument("text", required=False)
    @click.option("--modality", "-m", type=click.Choice([m.value for m in MODALITIES]),
                  required=True)
    @click.option("--example", "-e", type=click.Path(exists=True, dir_okay=False),
                  help="Search by an example file instead of text.")
    @click.option("--item", "item_key", default=None, help="Search by an indexed item's key.")
    @click.option("--source", "-s", "sources", multiple=True, help="Source id or glob.")
    @click.option("--since", default=None, help="ms epoch, ISO-8601 or a duration ago (1h).")
    @click.option("--until", default=None)
    @click.option("-k", "k", type=int, default=10, show_default=True)
    @click.option("--min-score", type=float, default=None)
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def search(text: str | None, modality: str, example: str | None, item_key: str | None,
               sources: tuple[str, ...], since: str | None, until: str | None, k: int,
               min_score: float | None, as_json: bool, api_url: str | None) -> None:
        """Items nearest to TEXT (or --example FILE, or --item KEY)."""
        if sum(x is not None for x in (text, example, item_key)) != 1:
            raise click.UsageError("give exactly one of TEXT, --example FILE or --item KEY")
        body = {"modality": modality, "text": text, "item_key": item_key,
                "sources": list(sources) or None, "since": since, "until": until, "k": k,
                "min_score": min_score}
        if example:
            path = Path(example)
            body["payload_b64"] = base64.b64encode(path.read_bytes()).decode()
            body["content_type"] = mimetypes.guess_type(path.name)[0]
        body = {key: v for key, v in body.items() if v is not None}
        client = ApiClient.from_settings(load_settings(), api_url)
        result = client.call("POST", "/search", body)
        if as_json:
            print_json(result)
            return
        table = Table("score", "ts", "source", "evidence")
        for r in result["results"]:
            ev = evidence_label(r["evidence"], r["key"])
            table.add_row(f"{r['score']:.3f}", str(r["ts"]), r["source"], str(ev)[:80])
        Console().print(table)
