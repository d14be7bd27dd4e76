"""Where a worker's start-up time goes: one gauge per phase and one log line when ready.

Phases, in seconds (`lookout_worker_startup_seconds{phase}`):
  - `process`: from the process's start (Linux: /proc) to the clock's creation:
    interpreter, imports (torch, Faust, ...) and settings;
  - `preflight`: `lookout worker` checking that Kafka and Redis answer;
  - `encoder_<modality>`: loading that modality's encoder (library imports, model files);
  - `assignment`: from the Faust app's start to the consumer group's first assignment;
  - `indexes`: ensuring the Redis indexes; `queries`: loading the standing queries;
  - `ready`: from the process's start until the worker is first ready (the total).
The phases need not add up: some overlap (the group join runs while indexes are ensured).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from streams.core.metrics import Metrics

log = logging.getLogger(__name__)


def process_age_s(proc: Path = Path("/proc")) -> float | None:
    """Seconds since this process started, from /proc (None where there is no /proc)."""
    try:
        stat = (proc / "self" / "stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime_s = float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)


class StartupClock:
    """Phase durations of one start-up; published on the worker's metrics once attached,
    and logged in one line the first time the worker is ready."""

    def __init__(self) -> None:
        age = process_age_s()
        self.origin = time.monotonic() - (age or 0.0)
        self.phases: dict[str, float] = {}
        self.reported = False
        self._app_start = time.monotonic()
        self._metrics: Metrics | None = None
        self._ready: Callable[[], bool] = lambda: False
        if age is not None:
            self.record("process", age)

    def attach(self, metrics: Metrics, ready: Callable[[], bool]) -> None:
        """Publish the phases so far, and later ones, on `metrics`; `ready` says whether
        the worker is ready now."""
        self._metrics, self._ready = metrics, ready
        for phase, seconds in self.phases.items():
            metrics.startup_seconds.labels(phase=phase).set(seconds)

    def record(self, phase: str, seconds: float) -> None:
        self.phases[phase] = round(seconds, 3)
        if self._metrics is not None:
            self._metrics.startup_seconds.labels(phase=phase).set(seconds)

    def timed(self, phase: str, start: float) -> None:
        """Record `phase` as the time since `start` (a `time.monotonic()`)."""
        self.record(phase, time.monotonic() - start)

    def since_start(self) -> float:
        return time.monotonic() - self.origin

    def app_started(self) -> None:
        """The Faust app runs its tasks: the consumer group join starts about now."""
        self._app_start = time.monotonic()

    def record_since_app_start(self, phase: str) -> None:
        self.timed(phase, self._app_start)

    def check_ready(self) -> None:
        """Call after each start-up step: the first time the worker is ready, record the
        total and log every phase."""
        if self.reported or not self._ready():
            return
        self.reported = True
        self.record("ready", self.since_start())
        log.info("worker ready after %.1f s: %s", self.phases["ready"],
                 ", ".join(f"{k}={v:.2f}s" for k, v in self.phases.items() if k != "ready"))
