"""`lookout query add|list|show|rm|apply|preview`: manage standing queries through a worker."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from encoders.modality import MODALITIES
from streams.api.client import ApiClient, ApiRequestError, api_option
from streams.cli.common import evidence_label, load_settings, print_json
from streams.queries.model import (
    example_from_file,
    load_queries_file,
    parse_query,
    plan_apply,
)


def _client(api_url: str | None) -> ApiClient:
    return ApiClient.from_settings(load_settings(), api_url)


def _examples(texts: tuple[str, ...], files: tuple[str, ...], items: tuple[str, ...]) -> list:
    return [*texts, *(example_from_file(f) for f in files), *({"item_key": k} for k in items)]


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--label wants KEY=VALUE, not {pair!r}")
        labels[key] = value
    return labels


def _print_queries(queries: list[dict[str, Any]]) -> None:
    table = Table("id", "modality", "threshold", "sources", "severity", "enabled", "positives")
    for q in queries:
        enabled = "yes" if q["enabled"] else "no"
        if q.get("stale"):
            enabled += " (stale: other model; run `query apply`)"
        table.add_row(q["id"], q["modality"], f"{q['threshold']:.2f}", ",".join(q["sources"]),
                      q["severity"], enabled, "; ".join(q["positives"])[:60])
    Console().print(table)


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.group("query")
    def query() -> None:
        """Standing queries: what to watch for."""

    @query.command("add")
    @click.argument("name")
    @click.option("--modality", "-m", type=click.Choice([m.value for m in MODALITIES]),
                  required=True)
    @click.option("--id", "query_id", default=None, help="Stable id (default: from NAME).")
    @click.option("--text", "-t", multiple=True, help="Positive text pattern (repeatable).")
    @click.option("--example", "-e", multiple=True, type=click.Path(dir_okay=False),
                  help="Positive example file (repeatable).")
    @click.option("--item", multiple=True, help="Key of an indexed item as positive example.")
    @click.option("--negative-text", multiple=True)
    @click.option("--negative-example", multiple=True, type=click.Path(dir_okay=False))
    @click.option("--negative-item", multiple=True)
    @click.option("--threshold", type=float, default=0.5, show_default=True)
    @click.option("--negative-margin", type=float, default=0.0, show_default=True)
    @click.option("--source", "-s", "sources", multiple=True, help="Source glob (default *).")
    @click.option("--cooldown", "cooldown_s", type=float, default=60.0, show_default=True)
    @click.option("--min-hits", type=int, default=1, show_default=True)
    @click.option("--window", "window_s", type=float, default=60.0, show_default=True)
    @click.option("--severity", type=click.Choice(["info", "warning", "critical"]),
                  default="warning", show_default=True)
    @click.option("--label", "labels", multiple=True, help="KEY=VALUE (repeatable).")
    @click.option("--webhook", "webhooks", multiple=True, help="Webhook URL (repeatable).")
    @click.option("--webhook-secret", default=None, help="HMAC secret for every --webhook.")
    @click.option("--disabled", is_flag=True, help="Register without activating.")
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def add(name: str, modality: str, query_id: str | None, text: tuple[str, ...],
            example: tuple[str, ...], item: tuple[str, ...], negative_text: tuple[str, ...],
            negative_example: tuple[str, ...], negative_item: tuple[str, ...],
            threshold: float, negative_margin: float, sources: tuple[str, ...],
            cooldown_s: float, min_hits: int, window_s: float, severity: str,
            labels: tuple[str, ...], webhooks: tuple[str, ...], webhook_secret: str | None,
            disabled: bool, as_json: bool, api_url: str | None) -> None:
        """Register a standing query NAME (replaces one with the same id)."""
        body: dict[str, Any] = {
            "name": name, "modality": modality,
            "positives": _examples(text, example, item),
            "negatives": _examples(negative_text, negative_example, negative_item),
            "threshold": threshold, "negative_margin": negative_margin,
            "sources": list(sources) or ["*"], "cooldown_s": cooldown_s,
            "min_hits": min_hits, "window_s": window_s, "severity": severity,
            "labels": _labels(labels), "enabled": not disabled,
            "webhooks": [{"url": u, "secret": webhook_secret} for u in webhooks],
        }
        if query_id:
            body["id"] = query_id
        parse_query(body)  # fail here, with the same message, before calling the worker
        result = _client(api_url).call("POST", "/queries", body)
        if as_json:
            print_json(result)
        else:
            click.echo(f"registered {result['id']} ({result['modality']}, "
                       f"threshold {result['threshold']})")

    @query.command("list")
    @click.option("--modality", "-m", type=click.Choice([m.value for m in MODALITIES]))
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def list_(modality: str | None, as_json: bool, api_url: str | None) -> None:
        """List standing queries."""
        result = _client(api_url).call("GET", "/queries", params={"modality": modality})
        if as_json:
            print_json(result["queries"])
        else:
            _print_queries(result["queries"])

    @query.command("show")
    @click.argument("query_id")
    @api_option
    def show(query_id: str, api_url: str | None) -> None:
        """Show one standing query (JSON)."""
        print_json(_client(api_url).call("GET", f"/queries/{query_id}"))

    @query.command("rm")
    @click.argument("query_ids", nargs=-1, required=True)
    @api_option
    def rm(query_ids: tuple[str, ...], api_url: str | None) -> None:
        """Delete standing queries."""
        client = _client(api_url)
        for query_id in query_ids:
            client.call("DELETE", f"/queries/{query_id}")
            click.echo(f"deleted {query_id}")

    @query.command("apply")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    @click.option("--dry-run", is_flag=True, help="Print the plan only.")
    @click.option("--no-prune", is_flag=True, help="Keep registered queries not in the file.")
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def apply(path: str, dry_run: bool, no_prune: bool, as_json: bool,
              api_url: str | None) -> None:
        """Make the registered queries equal to a YAML file (add, update, remove)."""
        declared = load_queries_file(path)
        client = _client(api_url)
        registered = client.call("GET", "/queries")["queries"]
        plan = plan_apply(declared, {q["id"]: q["fingerprint"] for q in registered},
                          prune=not no_prune,
                          stale={q["id"] for q in registered if q.get("stale")})
        failed: dict[str, str] = {}
        if not dry_run:
            # One refused query (e.g. a stale one whose example item is gone) must not
            # stop the others: apply the rest, then report it and exit non-zero.
            for q in [*plan.add, *plan.update]:
                try:
                    client.call("POST", "/queries", q.model_dump(mode="json", exclude_none=True))
                except ApiRequestError as e:
                    failed[q.id] = str(e)
            for query_id in plan.remove:
                client.call("DELETE", f"/queries/{query_id}")
        summary = {**plan.summary(), "failed": failed, "dry_run": dry_run}
        if as_json:
            print_json(summary)
        else:
            for verb in ("add", "update", "remove"):
                for query_id in summary[verb]:
                    status = " (failed)" if query_id in failed else ""
                    click.echo(f"{verb:>7} {query_id}{status}")
            click.echo(f"{'planned' if dry_run else 'applied'}: {len(plan.add)} added, "
                       f"{len(plan.update)} updated, {len(plan.remove)} removed, "
                       f"{len(plan.unchanged)} unchanged" + (f", {len(failed)} failed"
                                                             if failed else ""))
        if failed:
            raise ApiRequestError(f"{len(failed)} of the file's queries were not applied: "
                                  + "; ".join(f"{k}: {v}" for k, v in failed.items()))

    @query.command("preview")
    @click.argument("query_id")
    @click.option("--since", default=None, help="ms epoch, ISO-8601 or a duration ago (1h).")
    @click.option("--until", default=None)
    @click.option("--limit", type=int, default=200, show_default=True)
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def preview(query_id: str, since: str | None, until: str | None, limit: int,
                as_json: bool, api_url: str | None) -> None:
        """What QUERY_ID would have matched and fired on retained history."""
        body = {k: v for k, v in {"since": since, "until": until, "limit": limit}.items()
                if v is not None}
        result = _client(api_url).call("POST", f"/queries/{query_id}/preview", body)
        if as_json:
            print_json(result)
            return
        table = Table("ts", "source", "score", "fires", "evidence")
        fired = {r["key"] for r in result["would_fire"]}
        for r in result["matches"]:
            ev = evidence_label(r["evidence"], r["key"])
            table.add_row(str(r["ts"]), r["source"], f"{r['score']:.3f}",
                          "yes" if r["key"] in fired else "", str(ev)[:70])
        Console().print(table)
        click.echo(f"{result['match_count']} matches, {result['alert_count']} alerts would "
                   f"have fired" + (" (truncated)" if result["truncated"] else ""))
