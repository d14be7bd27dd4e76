"""`lookout alerts list|tail`: alert history and the live stream of a worker."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from streams.api.client import ApiClient, api_option
from streams.cli.common import evidence_label, load_settings, print_json


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _line(alert: dict[str, Any]) -> str:
    ev = alert.get("evidence", {})
    detail = evidence_label(ev, alert["item_key"])
    return (f"{_when(alert['ts'])} {alert['severity']:<8} {alert['query_id']} "
            f"source={alert['source']} score={alert['score']:.3f} {str(detail)[:80]}")


def _filters(fn: Any) -> Any:
    fn = click.option("--query", "-q", "query_id", default=None, help="Only this query id.")(fn)
    fn = click.option("--severity", type=click.Choice(["info", "warning", "critical"]))(fn)
    fn = click.option("--source", "-s", default=None, help="Source glob.")(fn)
    return api_option(click.option("--json", "as_json", is_flag=True,
                                   help="JSON Lines: one JSON object per alert and line "
                                        "(as `alerts tail --json`).")(fn))


def register(root: click.Group) -> None:
    """Attach this module's commands to the root CLI."""

    @root.group("alerts")
    def alerts() -> None:
        """Alerts raised by standing queries."""

    @alerts.command("list")
    @click.option("--since", default=None, help="ms epoch, ISO-8601 or a duration ago (1h).")
    @click.option("--until", default=None)
    @click.option("--limit", type=int, default=50, show_default=True)
    @_filters
    def list_(query_id: str | None, severity: str | None, source: str | None, since: str | None,
              until: str | None, limit: int, as_json: bool, api_url: str | None) -> None:
        """Recent alerts, newest first."""
        client = ApiClient.from_settings(load_settings(), api_url)
        result = client.call("GET", "/alerts", params={
            "query": query_id, "severity": severity, "source": source, "since": since,
            "until": until, "limit": limit})
        if as_json:
            for alert in result["alerts"]:
                click.echo(json.dumps(alert, sort_keys=True))
            return
        table = Table("time (UTC)", "severity", "query", "source", "score", "evidence")
        for a in result["alerts"]:
            ev = evidence_label(a["evidence"], a["item_key"])
            table.add_row(_when(a["ts"]), a["severity"], a["query_id"], a["source"],
                          f"{a['score']:.3f}", str(ev)[:60])
        Console().print(table)

    @alerts.command("feedback")
    @click.argument("alert_id")
    @click.option("--false-alarm", "verdict", flag_value="false_alarm",
                  help="Nothing happened: the item becomes a negative example of the query.")
    @click.option("--confirmed", "verdict", flag_value="confirmed",
                  help="A real event: the item becomes a positive example of the query.")
    @click.option("--by", default=None, help="Who judged (default: $USER).")
    @click.option("--note", default="", help="Free text kept with the verdict.")
    @click.option("--json", "as_json", is_flag=True)
    @api_option
    def feedback(alert_id: str, verdict: str | None, by: str | None, note: str, as_json: bool,
                 api_url: str | None) -> None:
        """Tell Lookout whether ALERT_ID was right; its query learns from the verdict."""
        if verdict is None:
            raise click.UsageError("say --false-alarm or --confirmed")
        client = ApiClient.from_settings(load_settings(), api_url)
        result = client.call("POST", f"/alerts/{alert_id}/feedback", {
            "verdict": verdict, "by": by or os.environ.get("USER", ""), "note": note})
        if as_json:
            print_json(result)
            return
        learned = ("its item was added to the query's "
                   + ("positives" if verdict == "confirmed" else "negatives")
                   if result["learned"] else "its item has expired, so nothing was learned")
        click.echo(f"{verdict.replace('_', ' ')} recorded for {alert_id} "
                   f"({result['query_id']}); {learned}")

    @alerts.command("tail")
    @click.option("--count", "-n", type=int, default=None, help="Stop after N alerts.")
    @_filters
    def tail(query_id: str | None, severity: str | None, source: str | None,
             count: int | None, as_json: bool, api_url: str | None) -> None:
        """Follow live alerts (server-sent events from /alerts/stream)."""
        client = ApiClient.from_settings(load_settings(), api_url)
        seen = 0
        for event in client.events("/alerts/stream", {"query": query_id, "severity": severity,
                                                      "source": source}):
            if event.get("event") != "alert":
                continue
            alert = event["data"]
            click.echo(json.dumps(alert, sort_keys=True) if as_json else _line(alert))
            seen += 1
            if count is not None and seen >= count:
                return
