"""The demo's pure parts: replay pacing and order, metrics parsing, settings hand-over, and
the scorecard built from observed alerts."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.metrics import parse_counters
from streams.demo.replay import ReplayItem, SendLog, replay
from streams.demo.run import DemoOptions, scenario_dir
from streams.demo.score import RunObservations, build_scorecard, observed_alerts
from streams.demo.view import render_scorecard


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
        self.slept += s


def _item(t: float, source: str = "web-1", modality: Modality = Modality.LOGS) -> ReplayItem:
    return ReplayItem(modality, source, t, b"x", "text/plain")


@given(st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=30),
       st.sampled_from([0.5, 1.0, 4.0]))
def test_replay_sends_each_item_at_its_time_over_speed(times: list[float], speed: float
                                                       ) -> None:
    clock = FakeClock()
    start = clock.now
    sent: list[tuple[float, int, float]] = []
    log = SendLog()
    items = [_item(t, source=f"s{i}") for i, t in enumerate(sorted(times))]
    replay(iter(items), lambda it, ts: sent.append((it.t_s, ts, clock.now)), base_ms=1_000_000,
           speed=speed, until_s=None, log=log, clock=clock, sleep=clock.sleep,
           wall_ms=lambda: int(clock.now * 1000))
    assert len(sent) == len(items) == log.total
    for t_s, ts_ms, at in sent:
        assert ts_ms == 1_000_000 + round(t_s * 1000)
        assert at >= start + t_s / speed - 1e-9
        assert at <= start + t_s / speed + 0.2 + 1e-9


def test_replay_stops_at_until_and_when_told() -> None:
    clock = FakeClock()
    log = SendLog()
    replay(iter([_item(0.0), _item(1.0), _item(2.0)]), lambda it, ts: None, base_ms=0,
           speed=1.0, until_s=1.5, log=log, clock=clock, sleep=clock.sleep)
    assert log.total == 2
    stopped = SendLog()
    replay(iter([_item(0.0), _item(1.0)]), lambda it, ts: None, base_ms=0, speed=1.0,
           until_s=None, log=stopped, should_stop=lambda: True, clock=clock,
           sleep=clock.sleep)
    assert stopped.total == 0


def test_parse_counters_sums_per_modality() -> None:
    text = "\n".join([
        "# HELP lookout_items_indexed_total Items",
        'lookout_items_indexed_total{modality="video"} 12.0',
        'lookout_items_indexed_total{modality="logs"} 3.0',
        'lookout_deadletters_total{modality="logs",reason="decode"} 2.0',
        'lookout_deadletters_total{modality="logs",reason="empty"} 1.0',
        'lookout_items_indexed_created{modality="video"} 1.7e9',
    ])
    assert parse_counters(text, "lookout_items_indexed_total") == {"video": 12.0, "logs": 3.0}
    assert parse_counters(text, "lookout_deadletters_total") == {"logs": 3.0}


def test_scenario_dir_is_per_seed_size_and_duration(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert scenario_dir(s, DemoOptions(seed=3, size="small")) == tmp_path / "demo" / "3-small"
    assert scenario_dir(s, DemoOptions(duration_s=30)).name == "7-default-30s"


TRUTH = {
    "seed": 7, "size": "small", "duration_s": 20.0,
    "sources": [{"id": "cam-a", "modality": "video"}, {"id": "web-1", "modality": "logs"}],
    "events": [
        {"pattern_id": "video-cat", "source": "cam-a", "start_s": 2.0, "end_s": 6.0},
        {"pattern_id": "logs-disk", "source": "web-1", "start_s": 10.0, "end_s": 12.0},
    ],
}
BASE = 1_000_000


def _alert(query: str, source: str, t_s: float, detected_after_send_s: float) -> dict:
    return {"query_id": query, "source": source, "ts": BASE + round(t_s * 1000),
            "detected_at": BASE + round(t_s * 1000) + 50 + round(detected_after_send_s * 1000)}


def _obs(alerts: list[dict], sends: SendLog, **kw: object) -> RunObservations:
    base = dict(truth=TRUTH, scenario_dir=Path("/s"), base_ms=BASE, speed=1.0,
                registered=["video-cat", "logs-disk"], unavailable={}, alerts=alerts,
                sends=sends, processed={"video": 2, "logs": 2}, deadletters=0,
                api_url="http://127.0.0.1:6066", kept=False, wall_s=12.0, drained=True)
    base.update(kw)
    return RunObservations(**base)  # type: ignore[arg-type]


def _sends(*pairs: tuple[str, float]) -> SendLog:
    log = SendLog()
    for source, t_s in pairs:
        modality = Modality.VIDEO if source.startswith("cam") else Modality.LOGS
        log.record(_item(t_s, source, modality), BASE + round(t_s * 1000),
                   BASE + round(t_s * 1000) + 50)
    return log


def test_only_alerts_about_records_this_run_sent_count() -> None:
    sends = _sends(("cam-a", 3.0), ("web-1", 11.0))
    alerts = [_alert("video-cat", "cam-a", 3.0, 0.4), _alert("logs-disk", "web-1", 11.0, 1.0),
              _alert("logs-disk", "web-1", 99.0, 0.1)]
    mine, foreign = observed_alerts(alerts, sends, BASE)
    assert foreign == 1
    assert [round(a.latency_s or 0, 3) for a in mine] == [0.4, 1.0]
    assert [a.t_s for a in mine] == [3.0, 11.0]


def test_scorecard_counts_hits_misses_and_false_alarms() -> None:
    sends = _sends(("cam-a", 3.0), ("cam-a", 15.0), ("web-1", 11.0))
    alerts = [_alert("video-cat", "cam-a", 3.0, 0.2), _alert("video-cat", "cam-a", 15.0, 0.6)]
    card = build_scorecard(_obs(alerts, sends))
    cat, disk = card["patterns"]["video-cat"], card["patterns"]["logs-disk"]
    assert (cat["events"], cat["caught"], cat["alerts"], cat["correct_alerts"]) == (1, 1, 2, 1)
    assert cat["precision"] == 0.5 and cat["recall"] == 1.0
    assert (disk["events"], disk["caught"], disk["alerts"]) == (1, 0, 0)
    assert card["acceptance"]["met"] is False
    assert card["latency_p50_s"] == 0.2 and card["latency_p99_s"] == 0.6
    assert card["items"]["video"] == {"sent": 2, "processed": 2, "per_s": None}
    assert card["alerts"]["this_run"] == 2


def test_scorecard_meets_the_target_and_lists_patterns_needing_a_model() -> None:
    sends = _sends(("cam-a", 3.0), ("web-1", 11.0))
    alerts = [_alert("video-cat", "cam-a", 3.0, 0.2), _alert("logs-disk", "web-1", 11.0, 0.3)]
    card = build_scorecard(_obs(alerts, sends, unavailable={"audio-x": "needs CLAP"}))
    assert card["acceptance"]["met"] is True
    assert card["patterns"]["audio-x"] == {"needs": "needs CLAP"}
    assert card["recall"] == 1.0 and card["precision"] == 1.0


def test_calibration_picks_the_centre_of_the_widest_best_threshold_run() -> None:
    from benchmarks.calibrate_patterns import choose

    def r(t: float, recall: float, precision: float) -> dict:
        return {"threshold": t, "recall": recall, "precision": precision}

    results = [r(0.3, 1.0, 0.5), r(0.4, 1.0, 1.0), r(0.5, 0.5, 1.0), r(0.6, 1.0, 1.0),
               r(0.7, 1.0, 1.0), r(0.8, 1.0, 1.0), r(0.9, 0.0, 0.0)]
    pick = choose(results)
    assert pick["range"] == [0.6, 0.8]
    assert pick["threshold"] == 0.7
    assert pick["f1"] == 1.0


def test_the_scorecard_points_at_the_console() -> None:
    card = build_scorecard(_obs([], _sends(("cam-a", 3.0))))
    assert card["next"]["console"] == "http://127.0.0.1:6066/"
    out = Console(width=200, record=True)
    out.print(render_scorecard(card))
    assert "console      http://127.0.0.1:6066/" in out.export_text()


FUSED_TRUTH = {
    **TRUTH,
    "composites": [{"kind": "composite", "id": "cat-and-disk", "all_of": ["video-cat",
                                                                          "logs-disk"]}],
    "composite_events": [
        {"id": "cx-001", "pattern_id": "cat-and-disk", "site": "lobby", "start_s": 2.0,
         "end_s": 12.0, "members": ["ev-001", "ev-002"], "planned": True, "ambiguous": False},
        {"id": "cx-002", "pattern_id": "cat-and-disk", "site": "lobby", "start_s": 15.0,
         "end_s": 18.0, "members": [], "planned": False, "ambiguous": True},
    ],
}


def _fused(site: str, t_s: float, *members: tuple[str, float]) -> dict:
    return {"query_id": "cat-and-disk", "modality": "composite", "source": members[-1][0],
            "site": site, "ts": BASE + round(t_s * 1000),
            "detected_at": BASE + round(t_s * 1000) + 300,
            "evidence": {"group_by": "site", "group": site, "members": [
                {"query_id": "q", "source": s, "ts": BASE + round(t * 1000)}
                for s, t in members]}}


def test_composite_alerts_are_scored_apart_by_site() -> None:
    sends = _sends(("cam-a", 3.0), ("web-1", 11.0), ("cam-a", 16.0), ("web-1", 17.0))
    alerts = [_alert("video-cat", "cam-a", 3.0, 0.2), _alert("logs-disk", "web-1", 11.0, 0.3),
              _fused("lobby", 11.0, ("cam-a", 3.0), ("web-1", 11.0)),  # caught cx-001
              _fused("dock", 11.0, ("cam-a", 3.0), ("web-1", 11.0)),  # wrong site: false
              _fused("lobby", 17.0, ("cam-a", 16.0), ("web-1", 17.0)),  # ambiguous: aside
              _fused("lobby", 11.0, ("cam-a", 3.0), ("web-1", 99.0))]  # not this run's
    card = build_scorecard(_obs(alerts, sends, truth=FUSED_TRUTH,
                                registered=["video-cat", "logs-disk", "cat-and-disk"]))
    assert set(card["patterns"]) == {"video-cat", "logs-disk"}
    assert card["recall"] == 1.0 and card["precision"] == 1.0
    fused = card["composites"]
    assert fused["patterns"]["cat-and-disk"] == {
        "events": 1, "caught": 1, "alerts": 2, "correct_alerts": 1, "recall": 1.0,
        "precision": 0.5}
    assert (fused["ambiguous_events"], fused["alerts_on_ambiguous"]) == (1, 1)
    assert card["alerts"]["this_run"] == 5 and card["alerts"]["about_other_records"] == 1
    assert card["acceptance"]["single_modality_met"] is True
    assert card["acceptance"]["composites_met"] is False
    assert card["acceptance"]["met"] is False
    # The latency of a composite alert runs from the send of its last member.
    logged = [a for a in card["alert_log"] if a["query_id"] == "cat-and-disk"]
    assert [(a["site"], a["event"]) for a in logged] == [
        ("lobby", "cx-001"), ("dock", None), ("lobby", "cx-002")]
    assert round(logged[0]["latency_s"], 3) == 0.25
    out = Console(width=160, record=True)
    out.print(render_scorecard(card))
    text = out.export_text()
    assert "cat-and-disk" in text and "per site" in text


def test_without_composites_the_acceptance_is_the_single_modality_one() -> None:
    sends = _sends(("cam-a", 3.0), ("web-1", 11.0))
    alerts = [_alert("video-cat", "cam-a", 3.0, 0.2), _alert("logs-disk", "web-1", 11.0, 0.3)]
    card = build_scorecard(_obs(alerts, sends))
    assert card["acceptance"]["composites_met"] is None and card["acceptance"]["met"] is True
    assert card["composites"]["patterns"] == {} and card["composites"]["recall"] is None


def test_the_demo_puts_its_sites_first_and_keeps_the_users_other_sites(tmp_path: Path) -> None:
    from streams.demo.run import apply_sites

    class Client:
        def __init__(self) -> None:
            self.sites = {"sites": [{"name": "lobby", "sources": ["door-*"], "labels": {}},
                                    {"name": "garage", "sources": ["cam-g"], "labels": {}}]}

        def call(self, method: str, path: str, body: dict | None = None) -> dict:
            assert path == "/sites"
            if method == "PUT":
                self.sites = body
            return self.sites

    path = tmp_path / "sites.yaml"
    path.write_text("sites:\n  lobby: [cam-lobby, mic-lobby]\n  dock: [cam-dock]\n")
    client = Client()
    assert apply_sites(client, path) == 3  # type: ignore[arg-type]
    assert [(s["name"], s["sources"]) for s in client.sites["sites"]] == [
        ("lobby", ["cam-lobby", "mic-lobby"]), ("dock", ["cam-dock"]), ("garage", ["cam-g"])]


def test_a_rerun_in_the_same_stack_says_its_figures_differ_from_a_first_run(
        tmp_path: Path) -> None:
    from streams.demo.run import earlier_run_note

    patterns = tmp_path / "patterns.yaml"
    patterns.write_text("queries:\n"
                        "  - {id: logs-disk-full, name: disk full, modality: logs,\n"
                        "     positives: [{text: disk full}]}\n"
                        "  - {id: logs-oom-kill, name: oom, modality: logs,\n"
                        "     positives: [{text: out of memory}]}\n")

    class Client:
        def __init__(self, ids: list[str]) -> None:
            self.ids = ids

        def call(self, method: str, route: str) -> dict[str, list[dict[str, str]]]:
            assert (method, route) == ("GET", "/queries")
            return {"queries": [{"id": i} for i in self.ids]}

    assert earlier_run_note(Client(["users-own"]), patterns, tmp_path / "home") == []
    [note] = earlier_run_note(Client(["logs-oom-kill", "users-own"]), patterns,
                              tmp_path / "home")
    assert note.startswith("1 of the demo's queries were registered already")
    assert str(tmp_path / "home") in note


class ScriptedWorker:
    """A worker whose /metrics text moves on by one step each time it is read."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.reads = 0

    def check_alive(self) -> None:
        pass

    def metrics_text(self) -> str:
        text = self.texts[min(self.reads, len(self.texts) - 1)]
        self.reads += 1
        return text


def _metrics(indexed: int, alerts: int) -> str:
    return (f'lookout_items_indexed_total{{modality="logs"}} {indexed}\n'
            f'lookout_alerts_total{{query_id="q",severity="warning"}} {alerts}\n')


def test_the_demo_is_not_drained_until_the_worker_committed_and_its_alerts_were_read() -> None:
    """A batch counts as indexed before its matches publish their alerts: the counters alone
    add up while an alert is still on its way. Only committed offsets say it is out."""
    from streams.demo.run import _wait_drained, _Watch

    # indexed and not committed (alert not counted yet) -> indexed, committed, alert counted
    worker = ScriptedWorker([_metrics(3, 0), _metrics(3, 0), _metrics(3, 1), _metrics(3, 1)])
    asked: list[bool] = []

    def committed_to_end() -> bool:  # not yet the first time it is asked, then yes
        asked.append(bool(asked))
        return asked[-1]

    alerts = type("Tail", (), {"records": []})()
    watch = _Watch(worker, alerts, alerts, {}, {}, 0.0, committed_to_end)  # type: ignore[arg-type]
    watch.sends.per_modality["logs"] = 3
    ticks: list[dict[str, int]] = []

    _, drained = _wait_drained(watch, timeout_s=0.5, on_tick=ticks.append, interval_s=0.01)
    assert not drained  # the worker counted its alert, the demo has not read it back
    assert asked[0] is False and ticks[-1] == {"logs": 3}

    alerts.records.append({"query_id": "q"})
    _, drained = _wait_drained(watch, timeout_s=0.5, on_tick=ticks.append, interval_s=0.01)
    assert drained
