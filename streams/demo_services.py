"""What `lookout demo` starts and watches: the worker subprocess (its readiness and
Prometheus counters) and the tail of a topic from the moment the run began.

Both are plain blocking helpers; the demo's main thread polls them while the replay runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.cli.api_client import default_api_url
from streams.errors import LookoutError
from streams.settings import Settings


class DemoError(LookoutError):
    """The demo could not run: a part did not start, or the scenario is unusable."""


def http_get(url: str, timeout_s: float = 3.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def parse_counters(text: str, name: str) -> dict[str, float]:
    """Sum of a labelled Prometheus counter per `modality` label."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels:
                key = sample.labels.get("modality", "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def settings_env(settings: Settings, base_env: dict[str, str]) -> dict[str, str]:
    """The environment that gives a subprocess these exact settings (LOOKOUT_* replaced)."""
    env = {k: v for k, v in base_env.items() if not k.startswith("LOOKOUT_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if name == "home":
            value = Path(value).absolute()
        env[f"LOOKOUT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) \
            else str(value)
    env["LOOKOUT_KAFKA_BOOTSTRAP"] = settings.resolved_kafka_bootstrap()
    env["LOOKOUT_REDIS_URL"] = settings.resolved_redis_url()
    return env


@dataclass
class WorkerHandle:
    """The worker the demo talks to: one it started (a subprocess) or one already running."""

    api_url: str
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def metrics_text(self) -> str:
        status, body = http_get(self.api_url + "/metrics")
        return body.decode("utf-8", "replace") if status == 200 else ""

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise DemoError with the end of its log if the worker we started has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"the worker exited with code {self.proc.returncode}; its log "
                            f"{self.log_path} ends with:\n{self.log_tail()}")

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = b""
        while time.monotonic() < deadline:
            self.check_alive()
            status, last = http_get(self.api_url + "/readyz")
            if status == 200:
                return
            time.sleep(0.5)
        raise DemoError(f"the worker at {self.api_url} was not ready after {timeout_s:.0f} s "
                        f"({last.decode('utf-8', 'replace')[:300]}); see {self.log_path}")

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM and wait (Faust finishes the batch in hand); SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def start_worker(settings: Settings, log_path: Path) -> WorkerHandle:
    """A `lookout worker` subprocess with the demo's settings, logging to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    script = Path(sys.executable).with_name("lookout")
    cmd = [str(script), "worker"] if script.exists() else \
        [sys.executable, "-c", "from streams.cli import main; main()", "worker"]
    env = settings_env(settings, dict(os.environ))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return WorkerHandle(default_api_url(settings), proc, log_path)


class TopicTail:
    """Records appended to a topic after `start()`: alerts are kept, anything else counted."""

    def __init__(self, bootstrap: str, topic: str, keep: bool,
                 client_kwargs: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.client_kwargs = dict(client_kwargs or {})  # TLS/SASL, see kafka_security
        self.topic = topic
        self.keep = keep
        self.records: list[dict[str, Any]] = []
        self.count = 0
        self._new: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None

    def start(self) -> None:
        """Remember the end offsets now; only what comes after them belongs to this run."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap.split(","), group_id=None,
                                     enable_auto_commit=False, client_id="lookout-demo",
                                     **self.client_kwargs)
            parts = None
            for _ in range(50):
                parts = consumer.partitions_for_topic(self.topic)
                if parts:
                    break
                time.sleep(0.2)
            if not parts:
                raise DemoError(f"topic {self.topic} does not exist on {self.bootstrap}")
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            for tp, end in consumer.end_offsets(tps).items():
                consumer.seek(tp, end)
        except KafkaError as e:
            raise DemoError(f"cannot read {self.topic} from {self.bootstrap}: {e}") from e
        self._consumer = consumer
        self._thread = threading.Thread(target=self._run, name=f"tail-{self.topic}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=200)
            for records in batches.values():
                for rec in records:
                    with self._lock:
                        self.count += 1
                        if self.keep:
                            try:
                                body = json.loads(rec.value)
                            except (TypeError, ValueError):
                                continue
                            self.records.append(body)
                            self._new.append(body)

    def take_new(self) -> list[dict[str, Any]]:
        with self._lock:
            new, self._new = self._new, []
        return new

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()
