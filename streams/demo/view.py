"""What `lookout demo` shows in a terminal: a live view while it runs, then the scorecard.

The live view (rich `Live`) has the replay clock, throughput per modality (records sent,
items the worker indexed, items per second over the last few seconds) and the alerts as
they arrive (query, source, score, event time, ingest-to-alert latency).
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

MAX_ALERT_ROWS = 12
RATE_WINDOW_S = 5.0


class QuietView:
    """No output while running (for --json)."""

    def phase(self, text: str) -> None:
        pass

    def replay_started(self, duration_s: float, speed: float) -> None:
        pass

    def progress(self, elapsed_s: float, sent: dict[str, int], processed: dict[str, int]
                 ) -> None:
        pass

    def alert(self, alert: dict[str, Any], latency_s: float | None, t_s: float | None) -> None:
        pass

    def close(self) -> None:
        pass


class LiveView:
    """Phases as lines, then a live panel during the replay."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None
        self._duration_s = 0.0
        self._speed = 1.0
        self._elapsed_s = 0.0
        self._sent: dict[str, int] = {}
        self._processed: dict[str, int] = {}
        self._history: deque[tuple[float, dict[str, int]]] = deque()
        self._alerts: deque[tuple[dict[str, Any], float | None, float | None]] = deque(
            maxlen=MAX_ALERT_ROWS)
        self._alert_count = 0
        self._phase = ""
        self._began = time.monotonic()

    def phase(self, text: str) -> None:
        self._phase = text
        if self._live is None:
            elapsed = time.monotonic() - self._began
            self.console.print(f"[dim]{elapsed:6.1f}s[/] [bold cyan]•[/] {text}")
        else:
            self._live.update(self.render())

    def replay_started(self, duration_s: float, speed: float) -> None:
        self._duration_s, self._speed = duration_s, speed
        self._phase = f"replaying at {speed:g}x real time"
        self._live = Live(self.render(), console=self.console, refresh_per_second=4,
                          transient=False)
        self._live.start()

    def progress(self, elapsed_s: float, sent: dict[str, int], processed: dict[str, int]
                 ) -> None:
        self._elapsed_s, self._sent, self._processed = elapsed_s, sent, processed
        now = time.monotonic()
        self._history.append((now, dict(processed)))
        while self._history and now - self._history[0][0] > RATE_WINDOW_S:
            self._history.popleft()
        if self._live is not None:
            self._live.update(self.render())

    def alert(self, alert: dict[str, Any], latency_s: float | None, t_s: float | None) -> None:
        self._alert_count += 1
        self._alerts.appendleft((alert, latency_s, t_s))
        if self._live is not None:
            self._live.update(self.render())

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _rate(self, modality: str) -> float:
        if len(self._history) < 2:
            return 0.0
        (t0, first), (t1, last) = self._history[0], self._history[-1]
        return (last.get(modality, 0) - first.get(modality, 0)) / max(t1 - t0, 1e-6)

    def render(self) -> RenderableType:
        clock = min(self._elapsed_s * self._speed, self._duration_s)
        head = Text.assemble(("Lookout demo ", "bold"), f"scenario {clock:5.1f} / "
                             f"{self._duration_s:.0f} s   ", (self._phase, "dim"))
        rates = Table("modality", "sent", "indexed", "items/s", box=None, pad_edge=False)
        for m in sorted(set(self._sent) | set(self._processed)):
            rates.add_row(m, str(self._sent.get(m, 0)), str(self._processed.get(m, 0)),
                          f"{self._rate(m):.1f}")
        alerts = Table("event time", "query", "source", "score", "latency", box=None,
                       pad_edge=False, title=f"alerts ({self._alert_count})",
                       title_justify="left")
        for a, latency, t_s in self._alerts:
            when = f"t={t_s:6.1f} s" if t_s is not None else _clock(a["ts"])
            alerts.add_row(when, a["query_id"], a["source"], f"{a['score']:.3f}",
                           f"{latency:.2f} s" if latency is not None else "-")
        return Panel(Group(head, Text(""), rates, Text(""), alerts), expand=False)


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def _fmt(x: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if x is None else pattern.format(x)


def _startup(card: dict[str, Any]) -> str:
    t = card.get("timings_s", {})
    if "replay_started_s" not in t:
        return ""
    return (f"; replay began {t['replay_started_s']:.0f} s after start (stack "
            f"{t.get('stack_up_s', 0):.0f} s, worker ready {t.get('worker_ready_s', 0):.0f} s)")


def render_scorecard(card: dict[str, Any]) -> RenderableType:
    """The end-of-run scorecard as rich tables."""
    sc = card["scenario"]
    items = Table("modality", "sent", "processed", "items/s", title="items",
                  title_justify="left")
    for m, v in card["items"].items():
        items.add_row(m, str(v["sent"]), str(v["processed"]), _fmt(v.get("per_s"), "{:.1f}"))
    patterns = Table("pattern", "events", "caught", "alerts", "correct", "recall",
                     "precision", title="alerts against truth.json", title_justify="left")
    for pid, p in card["patterns"].items():
        if "needs" in p:
            patterns.add_row(pid, "-", "-", "-", "-", "needs model", p["needs"][:50])
            continue
        ok = ((p["recall"] or 0) >= card["acceptance"]["recall_min"]
              and (p["precision"] or 0) >= card["acceptance"]["precision_min"])
        style = "" if ok or not p["events"] else "red"
        patterns.add_row(pid, str(p["events"]), str(p["caught"]), str(p["alerts"]),
                         str(p["correct_alerts"]), _fmt(p["recall"]), _fmt(p["precision"]),
                         style=style)
    fused = _composites_table(card)
    chosen = Table("query", "threshold", "how", title="thresholds in force at the end",
                   title_justify="left")
    for qid, th in card.get("thresholds", {}).items():
        how = (f"auto: {th['basis']}, {th['background_items']} background items"
               if th["auto"] else "fixed")
        chosen.add_row(qid, _fmt(th["threshold"], "{:.3f}"), how)
    a = card["alerts"]
    met = card["acceptance"]["met"]
    summary = Text.assemble(
        ("overall ", "bold"), f"recall {_fmt(card['recall'])}  precision "
        f"{_fmt(card['precision'])}  ", ("target met" if met else "target NOT met",
                                         "green" if met else "red"),
        f"  (recall >= {card['acceptance']['recall_min']}, precision >= "
        f"{card['acceptance']['precision_min']} overall"
        + (", and for the composites)\n" if card.get("composites", {}).get("events")
           else ")\n"),
        ("ingest-to-alert latency ", "bold"),
        f"p50 {_fmt(card['latency_p50_s'], '{:.2f} s')}  p99 "
        f"{_fmt(card['latency_p99_s'], '{:.2f} s')}\n",
        ("alerts ", "bold"), f"{a['this_run']} of this run read back from the alerts topic"
        + (f" ({a['about_other_records']} about earlier records ignored)"
           if a["about_other_records"] else "") + "\n",
        ("dead letters ", "bold"), f"{card['deadletters']}\n",
        ("run ", "bold"), f"seed {sc['seed']}, size {sc['size']}, {sc['duration_s']:g} s at "
        f"{sc['speed']:g}x, {card['wall_s']:.0f} s wall clock" + _startup(card))
    notes = [Text(n, style="yellow") for n in card["notes"]]
    n = card["next"]
    where = Text.assemble(
        ("where to look next\n", "bold"),
        f"  console      {n['console']}  (live alerts, search, queries, status)\n",
        f"  API          {n['api']}  (alerts: {n['alerts']})\n",
        f"  metrics      {n['metrics']}\n",
        f"  search       {n['search']}\n",
        f"               {n['search_example']}\n",
        f"  add a query  {n['add_query']}\n",
        f"               or edit and re-apply: {n['apply_queries']}\n",
        ("  the worker and stack are still running" if n["running"] else
         "  (the demo stopped the worker and stack it started; `lookout demo --keep` "
         "leaves them running for these commands)", "dim"))
    return Group(items, patterns, *fused, chosen, summary, *notes, Text(""), where)


def _composites_table(card: dict[str, Any]) -> list[RenderableType]:
    """Composite patterns against truth.json's cross-modal incidents (scored per site)."""
    fused = card.get("composites") or {}
    if not fused.get("patterns"):
        return []
    table = Table("composite", "incidents", "caught", "alerts", "correct", "recall",
                  "precision", title="composite alerts against truth.json (per site)",
                  title_justify="left")
    for pid, p in fused["patterns"].items():
        if "needs" in p:
            table.add_row(pid, "-", "-", "-", "-", "not registered", p["needs"][:50])
            continue
        table.add_row(pid, str(p["events"]), str(p["caught"]), str(p["alerts"]),
                      str(p["correct_alerts"]), _fmt(p["recall"]), _fmt(p["precision"]))
    note = Text(f"composites: recall {_fmt(fused['recall'])}  precision "
                f"{_fmt(fused['precision'])}; {fused['distractors']} distractors in the "
                f"scenario, {fused['ambiguous_events']} ambiguous incidents not scored",
                style="dim")
    return [table, note]
