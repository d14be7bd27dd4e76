"""The console in a real browser (Debian's headless Chromium, driven by selenium) against a
real worker on the embedded stack, with the API token enforced.

One worker and one browser session serve the whole module, in order, as one person would
use the page: type the token once, watch alerts arrive, open one and call it a false alarm,
search, create and disable a query, look at the status. Screenshots of each view are saved
under the module's temporary directory. The browser's own console log is read after every
step: an error there (a blocked inline script, a failed load) fails the test.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from encoders.modality import Modality
from streams.config.settings import Settings
from streams.core.wire import encode_headers
from streams.embedded import EmbeddedStack
from tests.helpers import free_port, metric_value, unique_name, wait_for
from tests.integration.alerting_helpers import produce_logs
from tests.integration.pipeline_records import item_keys, produce
from tests.integration.worker_fixtures import LOOKOUT_BIN, SpawnedWorker, worker_env
from tests.records import InputRecord, good_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "console-test-token"
DISK = "disk full on volume /data, write failed"
GRAFANA = "http://grafana.example:3000/"
XSS = "<script>alert(1)</script> payment failed for order 4411"
XSS_NAME = '<img src=x onerror="alert(2)">'
CARD_TIMEOUT_S = 30.0


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return "Debian chromium + chromium-driver not installed (make setup installs them as root)"
    return None


@dataclass
class Console:
    """The worker under test, the browser on its console, and where screenshots go."""

    worker: SpawnedWorker
    settings: Settings
    driver: Any
    shots: Path

    @property
    def url(self) -> str:
        return self.worker.api_url

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, JSON) of an API call with the token, as any client makes it."""
        req = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def errors(self) -> list[dict[str, Any]]:
        """Browser console entries at level SEVERE since the last call."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def wait(self, condition: Any, timeout_s: float = CARD_TIMEOUT_S, what: str = "") -> Any:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        try:  # views re-render their lists: an element found a moment ago may be gone
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.1, ignored_exceptions=(
                StaleElementReferenceException,)).until(condition)
        except Exception as e:
            self.shot("failure")
            raise AssertionError(f"{what or condition} within {timeout_s} s; worker log:\n"
                                 f"{self.worker.log_tail()}") from e

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def shot(self, name: str) -> Path:
        path = self.shots / f"console-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def go(self, view: str) -> None:
        self.js("location.hash = arguments[0]", view)

    def signed_in(self) -> None:
        """The console open with the token given, as after the first test: a test run on
        its own starts from a blank browser."""
        if self.driver.current_url.startswith(self.url):
            return
        self.driver.get(self.url + "/")
        self.wait(lambda d: d.find_element("id", "token-form").is_displayed(), 15,
                  "token form shown")
        self.driver.find_element("id", "token").send_keys(TOKEN + "\n")
        self.wait(lambda d: d.find_element("id", "conn").text == "live", 15, "live stream")


def _driver(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", f"--user-data-dir={profile}",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # The Debian driver by path: Selenium Manager (which would go online) is never asked.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def console(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Console]:
    if (why := _browser_missing()) is not None:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("console")
    name = unique_name("t")
    settings = Settings(
        home=stack.home, kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
        kafka_port=stack.kafka.port, kafka_controller_port=stack.kafka.controller_port,
        redis_port=stack.redis.port, topic_prefix=name, worker_id=f"{name}-worker",
        partitions=1)
    port = free_port()
    env = worker_env(settings, port, LOOKOUT_API_TOKEN=TOKEN, LOOKOUT_GRAFANA_URL=GRAFANA)
    worker = SpawnedWorker.start(env, f"http://127.0.0.1:{port}", tmp / "worker.log", tmp)
    worker.env = env
    driver, current = None, None
    try:
        worker.wait_ready(120.0)
        driver = _driver(tmp / "chromium-profile")
        current = Console(worker, settings, driver, tmp)
        yield current
    finally:
        if driver is not None:
            driver.quit()
        worker.kill()
        if current is not None:
            current.worker.kill()  # the one a test restarted


def _card_texts(c: Console) -> list[str]:
    return c.js("return [...document.querySelectorAll('#alerts .card')].map(n => n.textContent)")


def test_the_page_asks_for_the_token_once_and_goes_live_without_console_errors(console):
    c = console
    with urllib.request.urlopen(c.url + "/", timeout=10) as resp:  # no token needed for it
        headers = resp.headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert c.api("GET", "/queries")[0] == 200

    c.driver.get(c.url + "/")
    c.wait(lambda d: d.find_element("id", "token-form").is_displayed(), 15, "token form shown")
    c.shot("token")
    c.driver.find_element("id", "token").send_keys(TOKEN + "\n")
    c.wait(lambda d: d.find_element("id", "conn").text == "live", 15, "live stream connected")
    assert not c.driver.find_element("id", "token-form").is_displayed()
    assert c.js("return document.cookie") == ""
    assert TOKEN not in c.driver.current_url
    assert c.js("return sessionStorage.getItem('lookout.token')") == TOKEN
    assert c.errors() == []


def test_a_matching_log_line_appears_as_a_card_with_its_evidence(console):
    c = console
    status, q = c.api("POST", "/queries", {"name": "disk full", "modality": "logs",
                                           "positives": [DISK], "threshold": 0.9})
    assert status == 201, q
    sent = time.monotonic()
    produce_logs(c.settings, [("app-1", DISK)])
    c.wait(lambda d: any(DISK in t for t in _card_texts(c)), what="the disk card")
    seen_after_s = time.monotonic() - sent
    card = c.driver.find_element("css selector", "#alerts .card")
    assert card.find_element("css selector", "pre.logline").text == DISK
    text = card.text
    assert "disk full" in text and "app-1" in text and "threshold 0.900" in text
    assert "latency" in text and "event time" in text
    c.shot("live")
    print(f"produced log line -> card in the browser: {seen_after_s:.2f} s")
    assert c.errors() == []


def test_a_false_alarm_click_reaches_the_api(console):
    c = console
    card = c.driver.find_element("css selector", "#alerts .card")
    card.find_element("link text", "Details, feedback").click()
    c.wait(lambda d: d.find_element("id", "view-alert").is_displayed(), 10, "detail view")
    c.wait(lambda d: DISK in d.find_element("id", "alert-detail").text, 10, "detail content")
    c.driver.find_element("id", "fb-false_alarm").click()
    c.wait(lambda d: d.find_element("id", "fb-result").text.startswith("recorded: false_alarm"),
           15, "feedback recorded")
    status, shown = c.api("GET", "/queries/disk-full")
    assert status == 200 and shown["feedback"]["false_alarm"] == 1, shown
    c.shot("alert-detail")
    assert c.errors() == []


def test_markup_in_a_log_line_and_a_query_name_is_shown_as_text(console):
    c = console
    c.go("#live")
    status, q = c.api("POST", "/queries", {"name": XSS_NAME, "modality": "logs",
                                           "positives": [XSS], "threshold": 0.95})
    assert status == 201, q
    produce_logs(c.settings, [("app-2", XSS)])
    c.wait(lambda d: any(XSS in t for t in _card_texts(c)), what="the XSS card")
    card = c.driver.find_element("css selector", "#alerts .card")
    assert card.find_element("css selector", "pre.logline").text == XSS
    assert card.find_element("css selector", "h3").text.startswith(XSS_NAME)
    assert c.js("return document.querySelectorAll('#alerts script, #alerts .card h3 img')"
                ".length") == 0
    assert c.js("return document.querySelectorAll('script').length") == 1  # the module
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        c.driver.switch_to.alert  # noqa: B018  (no dialog was opened)
    assert c.errors() == []


def _video_frame_again(frame: InputRecord, source: str) -> InputRecord:
    ts = int(time.time() * 1000)
    return InputRecord(Modality.VIDEO, source, ts, frame.value, encode_headers("image/jpeg", ts))


def test_a_video_alert_card_shows_its_thumbnail(console):
    c = console
    frames = [good_record(Modality.VIDEO, i) for i in range(4)]
    produce(c.settings, frames)
    assert wait_for(lambda: len(item_keys(c.settings, Modality.VIDEO)) == 4, 60), \
        c.worker.log_tail()
    status, found = c.api("GET", "/search?modality=video&k=1&item_key=" + urllib.request.quote(
        next(iter(sorted(item_keys(c.settings, Modality.VIDEO))))))
    assert status == 200, found
    key = found["results"][0]["key"]
    status, q = c.api("POST", "/queries", {
        "name": "that frame", "modality": "video", "positives": [{"item_key": key}],
        "threshold": 0.99, "cooldown_s": 0})
    assert status == 201, q
    frame = next(f for f in frames if f.source == found["results"][0]["source"]
                 and f.ts_ms == found["results"][0]["ts"])
    produce(c.settings, [_video_frame_again(frame, "cam-door")])
    c.wait(lambda d: c.js(
        "const img = document.querySelector('#alerts .card img.thumb');"
        "return img !== null && img.complete && img.naturalWidth > 0"), what="a loaded thumbnail")
    src = c.js("return document.querySelector('#alerts .card img.thumb').src")
    assert src.startswith("blob:")  # fetched with the token, not a tokenless <img src>
    assert "cam-door" in _card_texts(c)[0]
    c.shot("live-video")
    assert c.errors() == []


def test_a_search_by_text_returns_results(console):
    c = console
    c.go("#search")
    c.wait(lambda d: d.find_element("id", "view-search").is_displayed(), 10, "search view")
    c.driver.find_element("id", "s-text").send_keys(DISK)
    c.driver.find_element("css selector", "#search-form button").click()
    c.wait(lambda d: len(d.find_elements("css selector", "#results .hit")) > 0, 30, "results")
    first = c.driver.find_element("css selector", "#results .hit")
    assert DISK in first.text and "score 1.000" in first.text, first.text
    assert "results (logs" in c.driver.find_element("id", "search-summary").text
    c.shot("search")
    assert c.errors() == []


def test_a_query_created_in_the_page_is_listed_by_the_api_and_can_be_disabled(console):
    c = console
    c.signed_in()
    registered = len(c.api("GET", "/queries")[1]["queries"])
    c.go("#queries")
    c.wait(lambda d: len(d.find_elements("css selector", "#queries-table tbody tr"))
           == registered, 15, f"the query list ({registered} registered)")
    for field, value in (("q-name", "cpu overheating"), ("q-text", "cpu temperature above")):
        c.driver.find_element("id", field).send_keys(value)
    threshold = c.driver.find_element("id", "q-threshold")
    threshold.clear()
    threshold.send_keys("0.8")
    c.driver.find_element("css selector", "#query-form button").click()
    c.wait(lambda d: "registered cpu-overheating" in d.find_element("id", "query-result").text,
           30, "registration")
    status, listed = c.api("GET", "/queries")
    mine = {q["id"]: q for q in listed["queries"]}["cpu-overheating"]
    assert mine["threshold"] == 0.8 and mine["enabled"] is True and mine["modality"] == "logs"
    cli = subprocess.run(  # what an operator at a terminal sees
        [str(LOOKOUT_BIN), "query", "list", "--json", "--api", c.worker.api_url],
        capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")},
             "LOOKOUT_API_TOKEN": TOKEN})
    assert cli.returncode == 0, cli.stderr
    assert "cpu-overheating" in {q["id"] for q in json.loads(cli.stdout)}

    row = "#queries-table tr[data-id='cpu-overheating']"
    c.wait(lambda d: d.find_elements("css selector", row), 10, "the new row")
    assert "enabled" in c.driver.find_element("css selector", row).text
    c.driver.find_element("css selector", f"{row} button").click()  # Disable
    c.wait(lambda d: "disabled" in d.find_element("css selector", row).text, 15, "disabled")
    assert c.api("GET", "/queries/cpu-overheating")[1]["enabled"] is False
    c.shot("queries")
    assert c.errors() == []


def test_status_shows_the_group_from_the_workers_heartbeats(console):
    c = console
    c.go("#status")
    cell = "#modality-table tr[data-modality='logs'] td:nth-child(4)"
    c.wait(lambda d: d.find_elements("css selector", cell), 15, "the status table")
    indexed = metric_value(c.worker.metrics_text(), "lookout_items_indexed_total",
                           'modality="logs"')
    assert indexed >= 2
    # the worker's heartbeat carries its count (one beat later), the page refreshes every 5 s
    c.wait(lambda d: float(d.find_element("css selector", cell).text) == indexed, 20,
           "indexed in the last 60 min = the worker's own counter")
    dead = "#modality-table tr[data-modality='logs'] td:nth-child(5)"
    assert c.driver.find_element("css selector", dead).text == "0"
    rows = c.driver.find_elements("css selector", "#workers-table tbody tr")
    port = c.url.rsplit(":", 1)[1]
    assert [r.get_attribute("data-instance").rsplit(":", 1)[1] for r in rows] == [port]
    assert rows[0].find_element("css selector", "td:last-child").text == "yes"
    assert "yes" in c.driver.find_element("id", "readiness").text
    links = c.driver.find_elements("css selector", "#grafana-links a")
    assert [a.get_attribute("href") for a in links] == [
        "http://grafana.example:3000/d/lookout-overview",
        "http://grafana.example:3000/d/lookout-queries"]  # LOOKOUT_GRAFANA_URL
    c.shot("status")
    assert c.errors() == []


def test_a_reconnecting_stream_gets_the_alerts_it_missed(console):
    """Last-Event-ID: the alerts recorded after that id come first, then live ones."""
    c = console
    status, history = c.api("GET", "/alerts?limit=100")
    oldest_first = [a["alert_id"] for a in reversed(history["alerts"])]
    assert len(oldest_first) >= 3, history
    req = urllib.request.Request(c.url + "/alerts/stream", headers={
        "Authorization": f"Bearer {TOKEN}", "Last-Event-ID": oldest_first[0]})
    replayed: list[str] = []
    with urllib.request.urlopen(req, timeout=30) as resp:
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                replayed.append(line[4:])
            if line.startswith(": replayed"):
                assert line == f": replayed {len(replayed)}"
                break
    assert replayed == oldest_first[1:]


def _stream_requests(c: Console) -> list[dict[str, str]]:
    """Headers (names in lower case) of every `/alerts/stream` request the page sent, from
    Chromium's own log."""
    out = []
    for entry in c.driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent" and \
                msg["params"]["request"]["url"].endswith("/alerts/stream"):
            out.append({k.lower(): v for k, v in msg["params"]["request"]["headers"].items()})
    return out


def test_the_page_reconnects_after_a_worker_restart_with_last_event_id(console, tmp_path):
    """The stream drops when its worker restarts; the page reconnects on its own, sending
    its token and the last alert id it saw, and shows the alert raised meanwhile."""
    c = console
    c.go("#live")
    newest = c.js("return document.querySelector('#alerts .card').dataset.id")
    c.driver.get_log("performance")  # only the requests from here on
    assert c.worker.stop() == 0
    c.wait(lambda d: "reconnecting" in d.find_element("id", "conn").text, 15, "stream cut")
    # handled once the worker is back (not DISK: the false alarm made it a negative)
    produce_logs(c.settings, [("app-3", XSS)])
    env = c.worker.env
    c.worker = SpawnedWorker.start(env, c.url, tmp_path / "worker-2.log", tmp_path)
    c.worker.env = env
    c.wait(lambda d: any("app-3" in t for t in _card_texts(c)), 120, "the missed alert's card")
    c.wait(lambda d: d.find_element("id", "conn").text == "live", 30, "live again")
    sent = _stream_requests(c)
    assert sent and sent[-1].get("last-event-id") == newest, sent
    assert sent[-1].get("authorization") == f"Bearer {TOKEN}"
    # while the worker was down the reconnect attempts were refused; nothing else went wrong
    assert [e for e in c.errors() if "ERR_CONNECTION_REFUSED" not in e["message"]] == []


def test_an_audio_alert_card_plays_the_chunk_that_matched(console):
    c = console
    chunk = good_record(Modality.AUDIO, 5)
    status, q = c.api("POST", "/queries", {
        "name": "that chunk", "modality": "audio", "threshold": 0.999, "cooldown_s": 0,
        "positives": [{"payload_b64": base64.b64encode(chunk.value).decode(),
                       "content_type": "audio/wav"}]})
    assert status == 201, q
    ts = int(time.time() * 1000)
    produce(c.settings, [InputRecord(Modality.AUDIO, "mic-door", ts, chunk.value,
                                     encode_headers("audio/wav", ts))])
    # the browser decoded the clip: it knows its length (HAVE_METADATA or more)
    c.wait(lambda d: c.js(
        "const a = document.querySelector('#alerts .card audio.clip');"
        "return a !== null && a.readyState >= 1 && a.duration > 0"), what="a playable clip")
    assert c.js("return document.querySelector('#alerts .card audio.clip').src").startswith(
        "blob:")
    assert "mic-door" in _card_texts(c)[0]
    c.shot("live-audio")
    assert c.errors() == []


def test_audio_search_results_have_players_with_a_playable_source(console, tmp_path):
    """Every audio item keeps a small clip (Ogg/Opus at LOOKOUT_AUDIO_CLIP_RATE_HZ), so
    search results of audio come with a player Chromium loads, not only alerts."""
    from selenium.webdriver.support.ui import Select

    c = console
    chunks = [good_record(Modality.AUDIO, 20 + i, source_count=1) for i in range(3)]
    before = len(item_keys(c.settings, Modality.AUDIO))  # the alert test's chunk
    produce(c.settings, chunks)
    assert wait_for(lambda: len(item_keys(c.settings, Modality.AUDIO)) == before + 3, 60), \
        c.worker.log_tail()
    example = tmp_path / "chunk.wav"
    example.write_bytes(chunks[1].value)
    c.go("#search")
    c.wait(lambda d: d.find_element("id", "view-search").is_displayed(), 10, "search view")
    c.driver.find_element("id", "s-text").clear()
    Select(c.driver.find_element("id", "s-modality")).select_by_visible_text("audio")
    c.driver.find_element("id", "s-example").send_keys(str(example))
    c.driver.find_element("css selector", "#search-form button").click()
    c.wait(lambda d: "results (audio" in d.find_element("id", "search-summary").text, 30,
           "audio results")
    hits = c.driver.find_elements("css selector", "#results .hit")
    assert len(hits) >= 4 and "score 1.000" in hits[0].text, [h.text for h in hits]
    c.wait(lambda d: c.js(
        "const players = [...document.querySelectorAll('#results .hit audio.clip')];"
        "return players.length === arguments[0]"
        " && players.every(a => a.error === null && a.readyState >= 1 && a.duration > 0)",
        len(hits)),
        what="a loaded player on every audio result")
    players = c.js("return [...document.querySelectorAll('#results .hit audio.clip')]"
                   ".map(a => [a.src, a.dataset.source, a.dataset.type])")
    opus = "audio/ogg;codecs=opus"
    for src, source, media in players:
        assert src.startswith("blob:")  # fetched with the token, shown from memory
        assert source.startswith("/items/") and source.endswith("/audio")
        # (the CSP forbids fetching a blob: URL again, so the source is asked directly)
        req = urllib.request.Request(c.url + source,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            served = resp.headers["Content-Type"]
            assert resp.status == 200 and served in ("audio/ogg; codecs=opus", "audio/wav")
        # the player plays the type served: the Opus clip as kept (not re-encoded to WAV);
        # the earlier test's alerted chunk as sent (WAV)
        assert media.replace(" ", "") == served.replace(" ", ""), (media, served)
    assert sum(m.replace(" ", "") == opus for _, _, m in players) >= 3, players
    c.shot("search-audio")
    assert c.errors() == []


def test_search_and_query_creation_by_an_uploaded_example(console, tmp_path):
    from selenium.webdriver.support.ui import Select

    c = console
    frames = [good_record(Modality.VIDEO, 40 + i, source_count=1) for i in range(3)]
    before = len(item_keys(c.settings, Modality.VIDEO))  # the earlier tests' frames
    produce(c.settings, frames)
    assert wait_for(lambda: len(item_keys(c.settings, Modality.VIDEO)) == before + 3, 60)
    example = tmp_path / "frame.jpg"
    example.write_bytes(frames[1].value)

    c.go("#search")
    c.wait(lambda d: d.find_element("id", "view-search").is_displayed(), 10, "search view")
    c.driver.find_element("id", "s-text").clear()
    Select(c.driver.find_element("id", "s-modality")).select_by_visible_text("video")
    c.driver.find_element("id", "s-example").send_keys(str(example))
    c.driver.find_element("css selector", "#search-form button").click()
    c.wait(lambda d: "results (video" in d.find_element("id", "search-summary").text, 30,
           "results by example")
    first = c.driver.find_element("css selector", "#results .hit")
    assert "score 1.000" in first.text, first.text  # the uploaded frame itself

    c.go("#queries")
    c.wait(lambda d: d.find_element("id", "view-queries").is_displayed(), 10, "queries view")
    c.driver.find_element("id", "q-name").send_keys("that frame again")
    Select(c.driver.find_element("id", "q-modality")).select_by_visible_text("video")
    c.driver.find_element("id", "q-example").send_keys(str(example))
    c.driver.find_element("css selector", "#query-form button").click()
    c.wait(lambda d: "registered that-frame-again" in d.find_element("id", "query-result").text,
           30, "the query registered from an example")
    status, q = c.api("GET", "/queries/that-frame-again")
    assert status == 200 and q["modality"] == "video", q
    assert c.errors() == []


def test_a_query_preview_draws_its_background_and_what_it_would_fire_on(console):
    """Own query, own lines: the preview finds the one matching line in the retained history
    and draws the background histogram with the threshold line."""
    c = console
    line = "fan failure on rack 7: speed 0 rpm"
    status, q = c.api("POST", "/queries", {
        "id": "fan-failure", "name": "fan failure", "modality": "logs",
        "positives": [line], "cooldown_s": 0})  # threshold: auto, so it keeps a background
    assert status == 201, q
    produce_logs(c.settings, [("rack-7", line)] + [(f"web-{i}", f"GET /p/{i} 200")
                                                  for i in range(5)])
    c.wait(lambda d: any(line in t for t in _card_texts(c)), 30, what="the fan card")
    # the workers flush background counts to Redis every few seconds: wait for all six
    assert wait_for(lambda: c.api("GET", "/queries/fan-failure/explain")[1]
                    ["histogram"]["n"] >= 6, 30)
    c.go("#search")  # the query list loads when its view is entered
    c.go("#queries")
    c.wait(lambda d: d.find_elements("css selector", "#queries-table tr[data-id='fan-failure']"),
           15, "the fan query row")
    row = c.driver.find_element("css selector", "#queries-table tr[data-id='fan-failure']")
    assert row.find_element("css selector", "td.today").text == "1"  # alerts today
    next(b for b in row.find_elements("css selector", "button") if b.text == "Preview").click()
    c.wait(lambda d: "would have raised" in d.find_element("id", "preview-summary").text, 30,
           "the preview")
    summary = c.driver.find_element("id", "preview-summary").text
    assert "1 alert(s) from 1 matching item(s)" in summary, summary
    assert c.js("return document.querySelectorAll('#preview-histogram svg rect.bar').length") > 0
    assert c.js("return document.querySelectorAll('#preview-histogram line.threshold').length") \
        == 1
    assert line in c.driver.find_element("id", "preview-matches").text
    c.shot("query-preview")
    assert c.errors() == []


OOM = "Out of memory: killed process 4242 (postgres) on db-1"
REFUSED = "upstream connect error: connection refused by <db-1:5432>"


def test_a_composite_alert_card_shows_its_site_and_each_members_evidence(console):
    """Two log queries and a composite over them at one site: the composite's card names
    the site and has one row per member, each with its own log line as text."""
    c = console
    c.go("#live")
    for qid, line in (("db-oom", OOM), ("app-refused", REFUSED)):
        status, q = c.api("POST", "/queries", {"id": qid, "name": qid, "modality": "logs",
                                               "positives": [line], "threshold": 0.95})
        assert status == 201, q
    status, sites = c.api("PUT", "/sites", {"sites": {"dc-east": ["db-1", "app-9"]}})
    assert status == 200, sites
    status, comp = c.api("POST", "/composites", {
        "name": "db outage", "all_of": ["db-oom", "app-refused"], "within_s": 10,
        "group_by": "site", "suppress_members": True, "severity": "critical"})
    assert status == 201, comp
    c.go("#search")  # the live view reloads the query names (the members') when entered
    c.go("#live")
    produce_logs(c.settings, [("db-1", OOM), ("app-9", REFUSED)])
    card_css = "#alerts .card .evidence.composite"
    c.wait(lambda d: d.find_elements("css selector", card_css), what="the composite card")
    card = c.driver.find_element("css selector", card_css).find_element("xpath", "..")
    assert "db outage" in card.find_element("css selector", "h3").text
    assert "composite" in card.find_element("css selector", "h3").text
    assert card.find_element("css selector", ".group").text == "site: dc-east"
    assert "dc-east" in card.find_element("css selector", ".meta").text  # the site fact
    rows = {r.get_attribute("data-query"): r
            for r in card.find_elements("css selector", "li.member")}
    assert sorted(rows) == ["app-refused", "db-oom"]
    for qid, line, source in (("db-oom", OOM, "db-1"), ("app-refused", REFUSED, "app-9")):
        row = rows[qid]
        assert row.find_element("css selector", "pre.logline").text == line  # as text
        assert "logs" in row.text and source in row.text and "1.000" in row.text
        assert "event time" in row.text
    assert c.js("return document.querySelectorAll('#alerts li.member pre.logline *').length") \
        == 0  # the <db-1:5432> stayed text
    from selenium.webdriver.support.ui import Select

    Select(c.driver.find_element("id", "f-modality")).select_by_visible_text("composite")
    shown = ("return [...document.querySelectorAll('#alerts .card')].map("
             "n => [!n.hidden, n.querySelector('.evidence.composite') !== null])")
    c.wait(lambda d: sorted(set(map(tuple, c.js(shown)))) == [(False, False), (True, True)],
           10, "only the composite cards shown (and some others hidden)")
    c.shot("live-composite")
    Select(c.driver.find_element("id", "f-modality")).select_by_visible_text("any")
    assert c.errors() == []


def test_composite_queries_are_listed_with_their_rule_and_filter_the_live_view(console):
    """The composite of the previous test: in the live view's query filter (its own group)
    where choosing it shows its cards only, and in the queries view with its rule, members,
    window, grouping and today's alerts; its preview finds the incident again."""
    from selenium.webdriver.support.ui import Select

    c = console
    status, listed = c.api("GET", "/composites")
    assert status == 200 and [x["id"] for x in listed["composites"]] == ["db-outage"], listed
    c.go("#search")
    c.go("#live")
    group = "#f-query optgroup[label='composite queries'] option"
    c.wait(lambda d: d.find_elements("css selector", group), 15, "composites in the filter")
    options = c.driver.find_elements("css selector", group)
    assert [(o.get_attribute("value"), o.text) for o in options] == [
        ("db-outage", "db outage (db-outage, composite)")]
    Select(c.driver.find_element("id", "f-query")).select_by_value("db-outage")
    shown = ("return [...document.querySelectorAll('#alerts .card')].filter(n => !n.hidden)"
             ".map(n => n.querySelector('h3').textContent)")
    c.wait(lambda d: c.js(shown) and all(t.startswith("db outage") for t in c.js(shown)), 10,
           "only the composite's cards")
    assert len(c.js(shown)) == 1 and len(_card_texts(c)) > 1
    Select(c.driver.find_element("id", "f-query")).select_by_value("")

    c.go("#queries")
    row_css = "#composites-table tr[data-id='db-outage']"
    c.wait(lambda d: d.find_elements("css selector", row_css), 15, "the composite's row")
    row = c.driver.find_element("css selector", row_css)
    cell = {name: row.find_element("css selector", f"td.{name}").text
            for name in ("rule", "within", "group-by", "today")}
    assert cell == {"rule": "all_of", "within": "10 s", "group-by": "site", "today": "1"}, cell
    members = row.find_elements("css selector", "td.members li")
    assert [(m.get_attribute("data-query"), m.text) for m in members] == [
        ("db-oom", "db-oom (db-oom)"), ("app-refused", "app-refused (app-refused)")]
    assert "members raise no alerts of their own" in row.text  # suppress_members
    assert c.driver.find_element("id", "composites-empty").is_displayed() is False
    # the composites are not mixed into the plain queries' table
    assert not c.driver.find_elements("css selector", "#queries-table tr[data-id='db-outage']")
    next(b for b in row.find_elements("css selector", "button") if b.text == "Preview").click()
    c.wait(lambda d: "would have raised" in d.find_element("id", "preview-summary").text, 30,
           "the composite preview")
    summary = c.driver.find_element("id", "preview-summary").text
    assert "raised 1 alert(s); member hits: db-oom 1, app-refused 1" in summary, summary
    firing = c.driver.find_element("css selector", "#preview-matches li.firing")
    assert "dc-east" in firing.text and "db-1" in firing.text and "app-9" in firing.text
    c.js("document.getElementById('composites-table').scrollIntoView()")
    c.shot("queries-composite")
    assert c.errors() == []
