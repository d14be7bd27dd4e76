"""`lookout demo`: the whole system end to end on one machine, judged against known truth.

Starts what is missing (embedded Kafka + Redis unless external, one worker), builds the
scenario once per seed/size (cached under `<home>/demo/`), registers its standing queries
through the worker's API, replays every camera, microphone and log with one base
timestamp at `speed` times real time, reads this run's alerts back from the alerts topic,
and scores them against truth.json. Whatever the demo started it stops again on the way
out (also on Ctrl-C), unless asked to keep it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from encoders.modality import MODALITIES
from streams.api.client import ApiClient, ApiRequestError, default_api_url
from streams.config.kafka_security import kafka_python_kwargs
from streams.config.settings import Settings
from streams.core.errors import LookoutError, ProducerError
from streams.core.metrics import counter_total, parse_counters
from streams.core.signals import sigterm_as_interrupt
from streams.demo.replay import ReplayItem, SendLog, replay, scenario_items
from streams.demo.score import RunObservations, build_scorecard
from streams.demo.services import DemoError, TopicTail
from streams.worker.process import WorkerProcess, http_get, settings_env

WORKER_READY_TIMEOUT_S = 240.0
DRAIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DemoOptions:
    """What `lookout demo` was asked to do."""

    speed: float = 1.0
    duration_s: float | None = None
    seed: int = 7
    size: str = "default"
    keep: bool = False


class DemoView(Protocol):
    """What the demo reports while it runs (rich live view, or nothing for --json)."""

    def phase(self, text: str) -> None: ...

    def replay_started(self, duration_s: float, speed: float) -> None: ...

    def progress(self, elapsed_s: float, sent: dict[str, int], processed: dict[str, int]
                 ) -> None: ...

    def alert(self, alert: dict[str, Any], latency_s: float | None, t_s: float | None
              ) -> None: ...


# --- scenario -----------------------------------------------------------------------------


def scenario_dir(settings: Settings, opts: DemoOptions) -> Path:
    """`<home>/demo/<seed>-<size>` (plus `-<duration>s` when the length is not the size's)."""
    name = f"{opts.seed}-{opts.size}"
    if opts.duration_s is not None:
        name += f"-{opts.duration_s:g}s"
    return Path(settings.home).absolute() / "demo" / name


def scenario_recipe() -> str:
    """Fingerprint of the code that writes scenarios: a cached one is rebuilt when it changes
    (new thresholds, events or media), so the demo never replays a stale scenario."""
    import hashlib
    import inspect

    from streams.demo import incidents, scenario
    from streams.demo import synth as scenario_synth

    text = "".join(inspect.getsource(m) for m in (scenario, scenario_synth, incidents))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_scenario(root: Path, opts: DemoOptions) -> tuple[dict[str, Any], bool]:
    """truth.json of the cached scenario, building it first when missing or made by other
    code; returns (truth, built)."""
    marker = root / ".complete"
    recipe = scenario_recipe()
    if (marker.exists() and marker.read_text().strip() == recipe
            and (root / "truth.json").exists()):
        return json.loads((root / "truth.json").read_text()), False
    from streams.demo.scenario import build_scenario

    marker.unlink(missing_ok=True)
    build_scenario(root, seed=opts.seed, duration_s=opts.duration_s, size=opts.size)
    marker.write_text(recipe + "\n")
    return json.loads((root / "truth.json").read_text()), True


# --- queries ------------------------------------------------------------------------------


def apply_sites(client: ApiClient, path: Path) -> int:
    """Put the scenario's sites.yaml in force (`PUT /sites`, as `lookout sites apply` does),
    keeping a running worker's other sites after them (like the queries, the user's own are
    never pruned); returns how many sites are in force. Composites group hits by site."""
    from streams.queries.sites import SiteMap, load_sites_file

    declared = load_sites_file(path)
    ours = {s.name for s in declared.sites}
    theirs = [s for s in SiteMap.model_validate(client.call("GET", "/sites")).sites
              if s.name not in ours]
    merged = SiteMap(sites=[*declared.sites, *theirs])
    return len(SiteMap.model_validate(
        client.call("PUT", "/sites", merged.model_dump(mode="json"))).sites)


def apply_patterns(client: ApiClient, path: Path) -> tuple[list[str], dict[str, str]]:
    """Register the scenario's queries, then its composites (their members must exist
    first), as `lookout query apply --no-prune` does: add/update, never prune the user's own.

    Returns the ids the worker holds now and, for each one it refused (e.g. a text pattern
    for an encoder without a text space, or a composite whose member was refused), the
    reason, which the scorecard shows.
    """
    from streams.queries.composite import parse_composites_document
    from streams.queries.model import load_queries_file, plan_apply, read_yaml

    declared = load_queries_file(path)
    composites = parse_composites_document(read_yaml(path), origin=str(path))
    refused: dict[str, str] = {}
    for route, items in (("/queries", declared), ("/composites", composites)):
        key = route.strip("/")
        registered = {q["id"]: q["fingerprint"] for q in client.call("GET", route)[key]}
        plan = plan_apply(items, registered, prune=False)
        for q in [*plan.add, *plan.update]:
            try:
                client.call("POST", route, q.model_dump(mode="json", exclude_none=True))
            except ApiRequestError as e:
                if "HTTP 4" not in str(e):
                    raise
                refused[q.id] = str(e).split(": ", 2)[-1]
    return [q.id for q in [*declared, *composites] if q.id not in refused], refused


# --- the run ------------------------------------------------------------------------------


@dataclass
class _Started:
    """What this run started and must stop again."""

    stack_services: list[str] = field(default_factory=list)
    worker: WorkerProcess | None = None


def _bring_up_stack(settings: Settings, started: _Started, view: DemoView) -> str:
    """Start the embedded services that are not external; returns the Kafka bootstrap."""
    if not (settings.uses_embedded_kafka or settings.uses_embedded_redis):
        return settings.resolved_kafka_bootstrap()
    from streams.embedded import EmbeddedStack

    stack = EmbeddedStack.from_settings(settings)
    view.phase("starting the embedded Kafka and Redis")
    result = stack.up()
    started.stack_services = list(result.started)
    if result.already_running:
        view.phase(f"using the running {', '.join(result.already_running)}")
    return settings.kafka_bootstrap or stack.kafka_bootstrap


def _stop_stack(settings: Settings, services: list[str]) -> None:
    """Stop only the services this run started (the others are treated as external)."""
    from streams.embedded import EmbeddedStack

    update: dict[str, Any] = {}
    if "kafka" not in services:
        update["kafka_bootstrap"] = settings.resolved_kafka_bootstrap()
    if "redis" not in services:
        update["redis_url"] = settings.resolved_redis_url()
    EmbeddedStack.from_settings(settings.model_copy(update=update)).down()


def _wait_drained(watch: _Watch, timeout_s: float, on_tick: Callable[[dict[str, int]], None],
                  interval_s: float = 0.5) -> tuple[dict[str, int], bool]:
    """Until the worker has indexed or dead-lettered every record sent, committed them, and
    every alert it counted is read back from the alerts topic (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        watch.worker.check_alive()
        text = watch.worker.metrics_text()
        done = parse_counters(text, "lookout_items_indexed_total")
        dead = parse_counters(text, "lookout_deadletters_total")
        processed = {m: int(done.get(m, 0) - watch.indexed0.get(m, 0))
                     for m in watch.sends.per_modality}
        on_tick(processed)
        records_done = all(
            processed.get(m, 0) + dead.get(m, 0) - watch.dead0.get(m, 0) >= n
            for m, n in watch.sends.per_modality.items())
        # A batch counts as indexed before it is matched; once its offsets are committed its
        # alerts are published too, so `raised` read after that is final.
        if records_done and watch.committed_to_end():
            raised = counter_total(watch.worker.metrics_text(), "lookout_alerts_total")
            if len(watch.alerts.records) >= raised - watch.alerts0:
                return processed, True
        if time.monotonic() >= deadline:
            return processed, False
        time.sleep(interval_s)


@dataclass
class _Watch:
    """What the demo reads while the scenario plays: this run's alerts and dead letters, and
    the worker's counters at the start (so only this run's work is counted)."""

    worker: WorkerProcess
    alerts: TopicTail
    dead: TopicTail
    indexed0: dict[str, float]
    dead0: dict[str, float]
    alerts0: float
    committed_to_end: Callable[[], bool]
    sends: SendLog = field(default_factory=SendLog)
    base_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def run_demo(settings: Settings, opts: DemoOptions, view: DemoView) -> dict[str, Any]:
    """Run the demo and return its scorecard (see `streams.demo.score.build_scorecard`)."""
    began = time.monotonic()
    timings: dict[str, float] = {}

    def mark(name: str) -> None:
        timings[name] = round(time.monotonic() - began, 1)

    started = _Started()
    with ExitStack() as cleanup, sigterm_as_interrupt():
        if not opts.keep:
            cleanup.callback(_shutdown, settings, started, view)
        bootstrap = _bring_up_stack(settings, started, view)
        mark("stack_up_s")
        services = settings.model_copy(update={
            "kafka_bootstrap": bootstrap, "redis_url": settings.resolved_redis_url()})
        worker, api_url = _start_worker(settings, services, started, view)
        # While the worker loads its models: the scenario (built once, then cached).
        root = scenario_dir(settings, opts)
        view.phase(f"scenario {root}")
        truth, built = ensure_scenario(root, opts)
        view.phase(("built" if built else "cached") + f" scenario: {len(truth['sources'])} "
                   f"sources, {len(truth['events'])} events, {truth['duration_s']:g} s")
        worker.wait_ready(WORKER_READY_TIMEOUT_S)
        mark("worker_ready_s")
        view.phase(f"worker ready at {api_url}; console: {api_url}/")
        client = ApiClient(api_url, settings.api_token)
        sites = apply_sites(client, root / "sites.yaml")
        rerun = earlier_run_note(client, root / "patterns.yaml", settings.home)
        registered, refused = apply_patterns(client, root / "patterns.yaml")
        view.phase(f"sites: {sites}; standing queries: {len(registered)} registered"
                   + (f", {len(refused)} need another model" if refused else ""))
        # The group to watch commits of: a reused worker may have another --worker-id.
        group = client.call("GET", "/healthz")["worker_id"]
        watch = _watch(settings, bootstrap, worker, group, cleanup)
        processed, drained = _play(services, root, truth, opts, watch, view, mark)
        thresholds = thresholds_in_force(ApiClient(api_url, settings.api_token), registered)
        obs = RunObservations(
            truth=truth, scenario_dir=root, base_ms=watch.base_ms, speed=opts.speed,
            registered=registered, unavailable=refused, alerts=list(watch.alerts.records),
            sends=watch.sends, processed=processed, deadletters=watch.dead.count,
            api_url=api_url, kept=opts.keep or started.worker is None,
            wall_s=time.monotonic() - began, drained=drained, timings=timings,
            notes=([] if drained else [
                "the worker had not processed every record when the demo stopped waiting: it "
                "could not keep up at this speed (see its /metrics)"]) + rerun,
            thresholds=thresholds)
        return build_scorecard(obs)


def earlier_run_note(client: ApiClient, patterns: Path, home: str | Path) -> list[str]:
    """A note when the demo's queries are registered already: this stack ran the demo
    before, its backgrounds and indexed items carry over (as in a deployment), and the
    demo scenario is event-dense (a tenth of the frames hold an event), so thresholds and
    figures differ from a first run's."""
    from streams.queries.model import load_queries_file

    ours = {q.id for q in load_queries_file(patterns)}
    held = {q["id"] for q in client.call("GET", "/queries")["queries"]} & ours
    if not held:
        return []
    return [f"{len(held)} of the demo's queries were registered already: this stack ran the "
            "demo before, and their backgrounds include that run's items and events, so "
            "the thresholds and figures differ from a first run's. For a first run: "
            f"`lookout stack down`, remove {Path(home).absolute()}, run it again."]


def thresholds_in_force(client: ApiClient, query_ids: list[str]) -> dict[str, dict[str, Any]]:
    """What each query matched at when the run ended, and how Lookout chose it."""
    out = {}
    for q in client.call("GET", "/queries")["queries"]:
        if q["id"] in query_ids:
            cal = q.get("calibration") or {}
            out[q["id"]] = {"threshold": q.get("effective_threshold"),
                            "auto": q["threshold"] == "auto", "basis": cal.get("basis"),
                            "background_items": cal.get("background_items")}
    return out


def _start_worker(settings: Settings, services: Settings, started: _Started, view: DemoView
                  ) -> tuple[WorkerProcess, str]:
    """The worker already answering on the API port, or a new one (stopped at the end)."""
    api_url = default_api_url(settings)
    status, _ = http_get(api_url + "/healthz")
    if status == 200:
        view.phase(f"using the worker already answering at {api_url}")
        return WorkerProcess(api_url), api_url
    log_path = Path(settings.home).absolute() / "logs" / "demo-worker.log"
    view.phase(f"starting a worker (log: {log_path})")
    worker = WorkerProcess.start(settings_env(services, os.environ), api_url, log_path)
    started.worker = worker
    return worker, api_url


def _watch(settings: Settings, bootstrap: str, worker: WorkerProcess, group: str,
           cleanup: ExitStack) -> _Watch:
    """Start tailing the alerts and dead-letter topics and take the counters' baselines."""
    kafka_kw = kafka_python_kwargs(settings)
    alerts = TopicTail(bootstrap, settings.topic("alerts"), keep=True, client_kwargs=kafka_kw)
    dead = TopicTail(bootstrap, settings.topic("deadletter"), keep=False, client_kwargs=kafka_kw)
    for tail in (alerts, dead):
        tail.start()
        cleanup.callback(tail.stop)
    from kafka.errors import KafkaError

    from streams.kafka.admin import committed_offsets

    topics = [settings.input_topic(m) for m in MODALITIES]

    def committed_to_end() -> bool:
        try:
            offsets = committed_offsets(bootstrap, topics, group, kafka_kw)
        except (KafkaError, OSError):
            return False  # asked again on the next tick
        return all(committed >= end for committed, end in offsets.values())

    text = worker.metrics_text()
    return _Watch(worker, alerts, dead, parse_counters(text, "lookout_items_indexed_total"),
                  parse_counters(text, "lookout_deadletters_total"),
                  counter_total(text, "lookout_alerts_total"), committed_to_end)


def _play(services: Settings, root: Path, truth: dict[str, Any], opts: DemoOptions,
          watch: _Watch, view: DemoView, mark: Callable[[str], None]
          ) -> tuple[dict[str, int], bool]:
    """Replay the scenario, show progress and alerts, then wait until the worker is done."""
    stop = threading.Event()
    failure: list[BaseException] = []
    sender = _start_replay(services, root, truth, opts, watch.base_ms, watch.sends, stop,
                           failure)
    mark("replay_started_s")
    view.replay_started(float(truth["duration_s"]), opts.speed)
    replay_began = time.monotonic()

    def show(processed: dict[str, int]) -> None:
        for a in watch.alerts.take_new():
            sent = watch.sends.sent_at(a["source"], int(a["ts"]))
            view.alert(a, (a["detected_at"] - sent) / 1000 if sent else None,
                       (a["ts"] - watch.base_ms) / 1000 if sent else None)
        view.progress(time.monotonic() - replay_began, dict(watch.sends.per_modality),
                      processed)

    try:
        while sender.is_alive():
            sender.join(timeout=0.5)
            watch.worker.check_alive()
            done = parse_counters(watch.worker.metrics_text(), "lookout_items_indexed_total")
            show({m: int(done.get(m, 0) - watch.indexed0.get(m, 0)) for m in done})
    except (KeyboardInterrupt, LookoutError):
        stop.set()
        sender.join(timeout=10)
        raise
    if failure:
        raise DemoError(f"replaying the scenario failed: {failure[0]}") from failure[0]
    mark("replay_finished_s")
    view.phase("replay finished; waiting for the worker to catch up")
    timeout_s = DRAIN_TIMEOUT_S / max(opts.speed, 1.0) + 30
    processed, drained = _wait_drained(watch, timeout_s, show)
    mark("drained_s")
    show(processed)
    watch.alerts.stop()
    watch.dead.stop()
    return processed, drained


def _start_replay(settings: Settings, root: Path, truth: dict[str, Any], opts: DemoOptions,
                  base_ms: int, sends: SendLog, stop: threading.Event,
                  failure: list[BaseException]) -> threading.Thread:
    """Send every record from a thread (the main thread keeps the view and Ctrl-C)."""
    from streams.config.kafka_security import aiokafka_kwargs
    from streams.kafka.admin import ensure_topics_sync, topic_layout
    from streams.kafka.producer import LookoutProducer, ProducerConfig

    bootstrap = settings.resolved_kafka_bootstrap()
    ensure_topics_sync(bootstrap, [settings.input_topic(m) for m in MODALITIES],
                       topic_layout(settings), aiokafka_kwargs(settings))
    producer = LookoutProducer.from_settings(
        settings, bootstrap, ProducerConfig(client_id="lookout-demo", linger_ms=5)).start()

    def send(item: ReplayItem, ts_ms: int) -> None:
        producer.send(item.modality, item.source, item.payload, item.content_type, ts_ms)

    def run() -> None:
        try:
            replay(scenario_items(root, truth), send, base_ms=base_ms, speed=opts.speed,
                   until_s=None, log=sends, should_stop=stop.is_set)
            producer.flush(timeout_s=60)
        except (ProducerError, LookoutError) as e:
            failure.append(e)
        finally:
            producer.close(raise_errors=False)

    thread = threading.Thread(target=run, name="lookout-demo-replay", daemon=True)
    thread.start()
    return thread


def _shutdown(settings: Settings, started: _Started, view: DemoView) -> None:
    """Stop the worker, then the stack services, that this run started."""
    if started.worker is not None:
        view.phase("stopping the worker")
        started.worker.stop()
    if started.stack_services:
        view.phase(f"stopping {', '.join(started.stack_services)}")
        _stop_stack(settings, started.stack_services)
