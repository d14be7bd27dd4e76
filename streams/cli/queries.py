"""`lookout query add|list|show|explain|rm|apply|preview`: manage standing queries through a
worker."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource
from rich.console import Console
from rich.table import Table

from encoders.modality import MODALITIES
from streams.api.client import ApiClient, ApiRequestError, api_option
from streams.cli.common import evidence_label, load_settings, print_json
from streams.core.errors import QueryValidationError
from streams.queries.composite import parse_composite, parse_composites_document
from streams.queries.model import (
    ApplyPlan,
    example_from_file,
    load_queries_file,
    parse_query,
    plan_apply,
    read_yaml,
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


class ThresholdParam(click.ParamType):
    """`auto` or a cosine in -1..1."""

    name = "auto|COSINE"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | str:
        if isinstance(value, float) or value == "auto":
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither 'auto' nor a number such as 0.6", param, ctx)


def threshold_label(q: dict[str, Any]) -> str:
    """`0.62 auto (background, 1200 items)` or `0.60` for a fixed threshold."""
    effective = q.get("effective_threshold", q["threshold"])
    if q["threshold"] != "auto":
        return f"{float(effective):.2f}"
    cal = q.get("calibration") or {}
    basis = cal.get("basis", "prior")
    return f"{float(effective):.2f} auto ({basis}, {cal.get('background_items', 0)} items)"


def _print_queries(queries: list[dict[str, Any]]) -> None:
    """The table, then one line per stale query: why the worker skips it and the fix."""
    table = Table("id", "modality", "threshold", "sources", "severity", "enabled", "positives")
    for q in queries:
        enabled = "yes" if q["enabled"] else "no"
        if q.get("stale"):
            enabled += " (STALE: skipped)"
        table.add_row(q["id"], q["modality"], threshold_label(q), ",".join(q["sources"]),
                      q["severity"], enabled, "; ".join(q["positives"])[:60])
    Console().print(table)
    for q in queries:
        if q.get("stale"):
            reason = q.get("stale_reason") or "registered with another model; run `query apply`"
            click.echo(f"stale {q['id']}: {reason}")


def render_explain(result: dict[str, Any], width: int = 50) -> None:
    """The background histogram as bars, the threshold's place in it, the best matches."""
    console = Console()
    hist, thr = result["histogram"], float(result["effective_threshold"])
    cal = result.get("calibration") or {}
    console.print(f"[bold]{result['query_id']}[/]  threshold {thr:.3f}"
                  + (f"  (auto: {cal.get('basis')}, {cal.get('background_items')} background "
                     f"items, expected false alarms/day {cal.get('expected_alerts_per_day')})"
                     if cal else "  (fixed)"))
    counts, edges = hist["counts"], hist["edges"]
    top = max(counts, default=0) or 1
    for i, n in enumerate(counts):
        lo, hi = edges[i], edges[i + 1]
        mark = " <- threshold" if lo <= thr < hi else ""
        bar = "#" * (0 if n == 0 else max(1, round(width * n / top)))
        style = "red" if lo >= thr else "cyan"
        console.print(f"{lo:7.3f} {n:7d} [{style}]{bar}[/]{mark}")
    if edges and thr >= edges[-1]:
        console.print(f"{thr:7.3f}         <- threshold (above every background score)")
    for m in result["best_matches"]:
        fires = "above" if m["score"] >= thr else "below"
        console.print(f"  {m['score']:.3f} {fires}  {m['source']}  {m['ts']}  "
                      f"{str(evidence_label(m['evidence'], m['key']))[:60]}")


def composite_options(fn: Any) -> Any:
    """The options that make `query add` register a composite query."""
    options = [
        click.option("--all-of", multiple=True, metavar="QUERY_ID",
                     help="Composite: every member query must hit (repeatable)."),
        click.option("--any-of", multiple=True, metavar="QUERY_ID",
                     help="Composite: some member query must hit (repeatable)."),
        click.option("--sequence", multiple=True, metavar="QUERY_ID",
                     help="Composite: members must hit in this event-time order (repeatable)."),
        click.option("--within", "within_s", type=float, default=None,
                     help="Composite: first to last member hit within this many seconds."),
        click.option("--group-by", default="site", show_default=True,
                     help="Composite: site, source or label:NAME (hits count per group)."),
        click.option("--score", type=click.Choice(["max", "mean", "weighted"]), default=None,
                     help="Composite: late-fusion score (--threshold then applies to it)."),
        click.option("--suppress-members", is_flag=True,
                     help="Composite: the members raise no alerts of their own."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _add_composite(body: dict[str, Any], query_id: str | None, as_json: bool,
                   api_url: str | None) -> None:
    if query_id:
        body["id"] = query_id
    if body["within_s"] is None:
        raise click.UsageError("a composite query needs --within SECONDS")
    body = {k: v for k, v in body.items() if v not in (None, [])}
    parse_composite(body)  # fail here, with the same message, before calling the worker
    result = _client(api_url).call("POST", "/composites", body)
    if as_json:
        print_json(result)
    else:
        click.echo(f"registered composite {result['id']} ({result['mode']} "
                   f"{', '.join(result['members'])} within {result['within_s']:g} s "
                   f"per {result['group_by']})")


def _apply_plans(client: ApiClient, plan: ApplyPlan[Any], cplan: ApplyPlan[Any]
                 ) -> dict[str, str]:
    """Composites go first when removed and last when added (their members must exist).
    One refused query (e.g. a stale one whose example item is gone) must not stop the
    others: apply the rest, and return what failed and why."""
    failed: dict[str, str] = {}
    for composite_id in cplan.remove:
        client.call("DELETE", f"/composites/{composite_id}")
    for path, items in (("/queries", [*plan.add, *plan.update]),
                        ("/composites", [*cplan.add, *cplan.update])):
        for q in items:
            try:
                client.call("POST", path, q.model_dump(mode="json", exclude_none=True))
            except ApiRequestError as e:
                failed[q.id] = str(e)
    for query_id in plan.remove:
        client.call("DELETE", f"/queries/{query_id}")
    return failed


def _print_apply(summary: dict[str, Any], dry_run: bool) -> None:
    failed, composites = summary["failed"], summary["composites"]
    for verb in ("add", "update", "remove"):
        for query_id in [*summary[verb], *composites[verb]]:
            status = " (failed)" if query_id in failed else ""
            click.echo(f"{verb:>7} {query_id}{status}")
    counts = {v: len(summary[v]) + len(composites[v])
              for v in ("add", "update", "remove", "unchanged")}
    click.echo(f"{'planned' if dry_run else 'applied'}: {counts['add']} added, "
               f"{counts['update']} updated, {counts['remove']} removed, "
               f"{counts['unchanged']} unchanged" + (f", {len(failed)} failed"
                                                     if failed else ""))


def _preview_composite(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    table = Table("ts", "group", "score", "members")
    for f in result["would_fire"]:
        members = "; ".join(f"{m['query_id']}@{m['source']} {m['score']:.3f}"
                            for m in f["members"])
        table.add_row(str(f["ts"]), f["group"], f"{f['score']:.3f}", members[:90])
    Console().print(table)
    hits = ", ".join(f"{q} {n}" for q, n in result["hit_counts"].items())
    click.echo(f"hits: {hits}; {result['alert_count']} alerts would have fired"
               + (" (truncated)" if result["truncated"] else ""))


def _print_composites(composites: list[dict[str, Any]]) -> None:
    table = Table("id", "rule", "members", "within", "group by", "severity", "enabled")
    for c in composites:
        table.add_row(c["id"], c["mode"], ", ".join(c["members"]), f"{c['within_s']:g} s",
                      c["group_by"], c["severity"], "yes" if c["enabled"] else "no")
    Console().print(table)


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.group("query")
    def query() -> None:
        """Standing queries: what to watch for."""

    @query.command("add")
    @click.argument("name")
    @click.option("--modality", "-m", type=click.Choice([m.value for m in MODALITIES]),
                  help="The query's modality (required unless it is a composite).")
    @click.option("--id", "query_id", default=None, help="Stable id (default: from NAME).")
    @composite_options
    @click.option("--text", "-t", multiple=True, help="Positive text pattern (repeatable).")
    @click.option("--example", "-e", multiple=True, type=click.Path(exists=True, dir_okay=False),
                  help="Positive example file (repeatable).")
    @click.option("--item", multiple=True, help="Key of an indexed item as positive example.")
    @click.option("--negative-text", multiple=True)
    @click.option("--negative-example", multiple=True,
                  type=click.Path(exists=True, dir_okay=False))
    @click.option("--negative-item", multiple=True)
    @click.option("--threshold", type=ThresholdParam(), default="auto", show_default=True,
                  help="Cosine similarity to match, or auto: Lookout places it where this "
                       "query's own background would exceed it at most --target-per-day "
                       "times per source per day (see `lookout query explain`).")
    @click.option("--target-per-day", type=float, default=1.0, show_default=True,
                  help="With --threshold auto: false alarms per watched source per day.")
    @click.option("--negative-margin", type=float, default=0.0, show_default=True)
    @click.option("--source", "-s", "sources", multiple=True, help="Source glob (default *).")
    @click.option("--cooldown", "cooldown_s", type=float, default=60.0, show_default=True)
    @click.option("--min-hits", type=int, default=1, show_default=True)
    @click.option("--window", "window_s", type=float, default=60.0, show_default=True)
    @click.option("--severity", type=click.Choice(["info", "warning", "critical"]),
                  default="warning", show_default=True)
    @click.option("--label", "labels", multiple=True, help="KEY=VALUE (repeatable).")
    @click.option("--webhook", "webhooks", multiple=True, help="Webhook URL (repeatable).")
    @click.option("--webhook-secret-env", default=None, metavar="NAME",
                  help="Workers' environment variable (LOOKOUT_WEBHOOK_SECRET_...) holding "
                       "the HMAC secret for every --webhook; the secret itself is never sent.")
    @click.option("--disabled", is_flag=True, help="Register without activating.")
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    @click.pass_context
    def add(ctx: click.Context, name: str, modality: str | None, query_id: str | None,
            all_of: tuple[str, ...], any_of: tuple[str, ...], sequence: tuple[str, ...],
            within_s: float | None, group_by: str, score: str | None, suppress_members: bool,
            text: tuple[str, ...],
            example: tuple[str, ...], item: tuple[str, ...], negative_text: tuple[str, ...],
            negative_example: tuple[str, ...], negative_item: tuple[str, ...],
            threshold: float | str, target_per_day: float, negative_margin: float,
            sources: tuple[str, ...],
            cooldown_s: float, min_hits: int, window_s: float, severity: str,
            labels: tuple[str, ...], webhooks: tuple[str, ...], webhook_secret_env: str | None,
            disabled: bool, as_json: bool, api_url: str | None) -> None:
        """Register a standing query NAME (replaces one with the same id); with --all-of,
        --any-of or --sequence, a composite query over registered member queries."""
        if all_of or any_of or sequence:
            body = {"kind": "composite", "name": name, "all_of": list(all_of),
                    "any_of": list(any_of), "sequence": list(sequence), "within_s": within_s,
                    "group_by": group_by, "score": score, "suppress_members": suppress_members,
                    "threshold": None if threshold == "auto" else threshold,
                    "severity": severity, "labels": _labels(labels), "enabled": not disabled,
                    "webhooks": [{"url": u, "secret_env": webhook_secret_env}
                                 for u in webhooks]}
            if ctx.get_parameter_source("cooldown_s") != ParameterSource.DEFAULT:
                body["cooldown_s"] = cooldown_s
            _add_composite(body, query_id, as_json, api_url)
            return
        if modality is None:
            raise click.UsageError("--modality/-m is required (or give --all-of, --any-of or "
                                   "--sequence for a composite query)")
        body: dict[str, Any] = {
            "name": name, "modality": modality,
            "positives": _examples(text, example, item),
            "negatives": _examples(negative_text, negative_example, negative_item),
            "threshold": threshold, "target_per_day": target_per_day,
            "negative_margin": negative_margin,
            "sources": list(sources) or ["*"], "cooldown_s": cooldown_s,
            "min_hits": min_hits, "window_s": window_s, "severity": severity,
            "labels": _labels(labels), "enabled": not disabled,
            "webhooks": [{"url": u, "secret_env": webhook_secret_env} for u in webhooks],
        }
        if query_id:
            body["id"] = query_id
        parse_query(body)  # fail here, with the same message, before calling the worker
        result = _client(api_url).call("POST", "/queries", body)
        if as_json:
            print_json(result)
        else:
            click.echo(f"registered {result['id']} ({result['modality']}, "
                       f"threshold {threshold_label(result)})")

    @query.command("list")
    @click.option("--modality", "-m", type=click.Choice([m.value for m in MODALITIES]))
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def list_(modality: str | None, as_json: bool, api_url: str | None) -> None:
        """List standing queries."""
        client = _client(api_url)
        result = client.call("GET", "/queries", params={"modality": modality})
        if as_json:
            print_json(result["queries"])
            return
        _print_queries(result["queries"])
        composites = client.call("GET", "/composites")["composites"]
        if composites and modality is None:
            _print_composites(composites)

    @query.command("show")
    @click.argument("query_id")
    @api_option
    def show(query_id: str, api_url: str | None) -> None:
        """Show one standing or composite query (JSON)."""
        client = _client(api_url)
        composites = {c["id"] for c in client.call("GET", "/composites")["composites"]}
        path = "/composites" if query_id in composites else "/queries"
        print_json(client.call("GET", f"{path}/{query_id}"))

    @query.command("explain")
    @click.argument("query_id")
    @click.option("--bins", type=click.IntRange(5, 400), default=30, show_default=True)
    @click.option("-k", "k", type=click.IntRange(0, 100), default=5, show_default=True,
                  help="Best retained matches to list.")
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def explain(query_id: str, bins: int, k: int, as_json: bool, api_url: str | None) -> None:
        """Why QUERY_ID's threshold is where it is: its background scores as a histogram,
        the threshold among them, and the best retained matches."""
        result = _client(api_url).call("GET", f"/queries/{query_id}/explain",
                                       params={"bins": bins, "k": k})
        if as_json:
            print_json(result)
        else:
            render_explain(result)

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
        """Make the registered queries (and composites) equal to a YAML file (add, update,
        remove)."""
        declared = load_queries_file(path)
        composites = parse_composites_document(read_yaml(path), origin=path)
        clash = sorted({q.id for q in declared} & {c.id for c in composites})
        if clash:
            raise QueryValidationError(f"{path}: ids used by a query and a composite: {clash}")
        client = _client(api_url)
        registered = client.call("GET", "/queries")["queries"]
        plan = plan_apply(declared, {q["id"]: q["fingerprint"] for q in registered},
                          prune=not no_prune,
                          stale={q["id"] for q in registered if q.get("stale")})
        cplan = plan_apply(composites, {c["id"]: c["fingerprint"] for c in
                                        client.call("GET", "/composites")["composites"]},
                           prune=not no_prune)
        failed = {} if dry_run else _apply_plans(client, plan, cplan)
        summary = {**plan.summary(), "composites": cplan.summary(), "failed": failed,
                   "dry_run": dry_run}
        if as_json:
            print_json(summary)
        else:
            _print_apply(summary, dry_run)
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
        """What QUERY_ID (a standing or composite query) would have matched and fired on
        retained history."""
        body = {k: v for k, v in {"since": since, "until": until, "limit": limit}.items()
                if v is not None}
        client = _client(api_url)
        if query_id in {c["id"] for c in client.call("GET", "/composites")["composites"]}:
            _preview_composite(client.call("POST", f"/composites/{query_id}/preview", body),
                               as_json)
            return
        result = client.call("POST", f"/queries/{query_id}/preview", body)
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
