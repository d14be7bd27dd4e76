"""The embedded stack: Kafka and Redis started together under one home, on loopback ports.

`LOOKOUT_HOME` holds everything (`kafka/`, `redis/`, `logs/`, `pids/`), so two stacks with
different homes and ports run side by side. `down` stops only what the pid files name.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.core.errors import StackError, StackNotRunning

from .kafka import KafkaJars, KafkaNode, default_cache_dir
from .processes import ManagedProcess, file_lock, require_free_ports, wait_until
from .redis_server import RedisServer

if TYPE_CHECKING:
    from streams.config.settings import Settings

log = logging.getLogger(__name__)

KAFKA = "kafka"
REDIS = "redis"


@dataclass(frozen=True)
class ServiceStatus:
    """What `lookout stack status` shows for one service."""

    name: str
    address: str
    embedded: bool
    running: bool
    healthy: bool
    pid: int | None = None
    log: str | None = None

    def as_json(self) -> dict[str, Any]:
        key = "bootstrap" if self.name == KAFKA else "url"
        data = asdict(self)
        data.pop("name")
        data[key] = data.pop("address")
        return data


@dataclass(frozen=True)
class StackStatus:
    home: str
    kafka: ServiceStatus
    redis: ServiceStatus

    @property
    def healthy(self) -> bool:
        return self.kafka.healthy and self.redis.healthy

    def as_json(self) -> dict[str, Any]:
        return {KAFKA: self.kafka.as_json(), REDIS: self.redis.as_json()}


@dataclass(frozen=True)
class UpResult:
    """Which services `up` started and which were already running."""

    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Services:
    """Where Kafka and Redis are, embedded or external: what every other component needs."""

    kafka_bootstrap: str
    redis_url: str


class EmbeddedStack:
    """Kafka + Redis of one home. Constructing it touches nothing; `up()` starts the servers."""

    def __init__(
        self,
        home: Path,
        kafka_port: int = 19092,
        controller_port: int = 19093,
        redis_port: int = 16379,
        kafka_version: str = "4.1.1",
        *,
        partitions: int = 4,
        cache_dir: Path | None = None,
        kafka_heap: str = "512m",
        with_kafka: bool = True,
        with_redis: bool = True,
    ) -> None:
        self.home = Path(home).absolute()
        self.jars = KafkaJars(kafka_version, cache_dir or default_cache_dir())
        self.kafka = KafkaNode(
            self.home, kafka_port, controller_port, self.jars, partitions=partitions,
            heap=kafka_heap,
        )  # fmt: skip
        self.redis = RedisServer(self.home, redis_port)
        self.with_kafka = with_kafka
        self.with_redis = with_redis
        self._procs: dict[str, ManagedProcess] = {
            KAFKA: self.kafka.process(self.pids_dir, self.logs_dir),
            REDIS: self.redis.process(self.pids_dir, self.logs_dir),
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedStack:
        """The stack of `settings.home`, managing only the services that are not external."""
        return cls(
            settings.home,
            kafka_port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            redis_port=settings.redis_port,
            kafka_version=settings.kafka_version,
            partitions=settings.partitions,
            with_kafka=settings.uses_embedded_kafka,
            with_redis=settings.uses_embedded_redis,
        )

    # --- addresses and files -----------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pids_dir(self) -> Path:
        return self.home / "pids"

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(
            name for name, on in ((KAFKA, self.with_kafka), (REDIS, self.with_redis)) if on
        )

    def log_file(self, service: str) -> Path:
        return self._procs[service].log_file

    def pid(self, service: str) -> int | None:
        return self._procs[service].pid()

    # --- lifecycle -----------------------------------------------------------------------
    def install(self) -> bool:
        """Fetch the Kafka jars once (Maven); quick no-op when they are there."""
        return self.jars.install() if self.with_kafka else False

    def up(self, timeout_s: float = 180.0) -> UpResult:
        """Start what is not running and wait until each service is ready. Idempotent."""
        began = time.monotonic()
        with file_lock(self.home / "stack.lock"):
            to_start = [name for name in self.services if self.pid(name) is None]
            already = [name for name in self.services if name not in to_start]
            ports: dict[str, int] = {}
            names: dict[str, str] = {}
            if KAFKA in to_start:
                ports |= {
                    "Kafka broker": self.kafka.port,
                    "Kafka controller": self.kafka.controller_port,
                }
                names |= {
                    "Kafka broker": "LOOKOUT_KAFKA_PORT",
                    "Kafka controller": "LOOKOUT_KAFKA_CONTROLLER_PORT",
                }
            if REDIS in to_start:
                ports["Redis"] = self.redis.port
                names["Redis"] = "LOOKOUT_REDIS_PORT"
            require_free_ports(ports, names)
            spawned: dict[str, subprocess.Popen] = {}
            try:
                if KAFKA in to_start:
                    self.install()
                    spawned[KAFKA] = self.kafka.start(self._procs[KAFKA])
                if REDIS in to_start:
                    spawned[REDIS] = self.redis.start(self._procs[REDIS])
                for name in self.services:
                    self._wait_ready(name, max(1.0, timeout_s - (time.monotonic() - began)),
                                     spawned.get(name))
            except BaseException:  # a failed (or interrupted) start leaves nothing running
                for name, handle in spawned.items():
                    outcome = _stop_spawned(self._procs[name], handle)
                    if name == KAFKA:
                        self.kafka.after_stop(outcome)
                raise
        return UpResult(list(spawned), already, time.monotonic() - began)

    def _is_ready(self, name: str) -> bool:
        return self.kafka.is_ready() if name == KAFKA else self.redis.is_ready()

    def _wait_ready(
        self, name: str, timeout_s: float, spawned: subprocess.Popen | None = None
    ) -> None:
        """Until `name` answers; `spawned` is the process this call started (its exit is
        certain), otherwise the pid file tells whether the service still runs."""
        proc = self._procs[name]
        died = False
        warned = False

        def ready() -> bool:
            nonlocal died, warned
            if spawned is not None:
                gone = spawned.poll() is not None
                if not gone and not warned and not proc.pid_file.exists():
                    warned = True
                    log.warning("%s (pid %d) runs but its pid file %s is gone",
                                name, spawned.pid, proc.pid_file)
            else:
                gone = proc.pid() is None
            if gone:
                died = True
                return True
            return self._is_ready(name)

        ok = wait_until(ready, timeout_s, interval_s=0.25)
        if died:
            code = f" with code {spawned.returncode}" if spawned is not None else ""
            raise StackError(
                f"{name} exited during start-up{code}; its log {proc.log_file} ends with:\n"
                f"{proc.log_tail()}"
            )
        if not ok:
            raise StackError(
                f"{name} did not become ready within {timeout_s:.0f}s; see {proc.log_file}:\n"
                f"{proc.log_tail()}"
            )

    def down(self, timeout_s: float = 30.0) -> list[str]:
        """Stop the services this home started (SIGTERM, then SIGKILL after the timeout)."""
        stopped: list[str] = []
        if not self.home.is_dir():
            return stopped
        with file_lock(self.home / "stack.lock"):
            # Redis first: it is quick, and Kafka's clean shutdown takes the longest.
            for name in (REDIS, KAFKA):
                if name not in self.services:
                    continue
                outcome = self._procs[name].stop(timeout_s)
                if name == KAFKA:
                    self.kafka.after_stop(outcome)
                if outcome is not None:
                    stopped.append(name)
        return stopped

    def status(self) -> StackStatus:
        """Each embedded service's address, pid, health and log (an external one reads as
        not running here; `lookout stack status` probes external services itself)."""
        return StackStatus(
            home=str(self.home),
            kafka=self._service_status(KAFKA, self.kafka_bootstrap),
            redis=self._service_status(REDIS, self.redis_url),
        )

    def _service_status(self, name: str, address: str) -> ServiceStatus:
        embedded = name in self.services
        pid = self.pid(name) if embedded else None
        running = pid is not None
        healthy = running and self._is_ready(name)
        return ServiceStatus(
            name=name,
            address=address,
            embedded=embedded,
            running=running,
            healthy=healthy,
            pid=pid,
            log=str(self.log_file(name)) if embedded else None,
        )


def resolve_services(settings: Settings) -> Services:
    """External addresses when set, else the embedded stack's, which must be running."""
    stack = EmbeddedStack.from_settings(settings)
    for name, setting in ((KAFKA, "LOOKOUT_KAFKA_BOOTSTRAP"), (REDIS, "LOOKOUT_REDIS_URL")):
        if name in stack.services and stack.pid(name) is None:
            raise StackNotRunning(
                f"the embedded {name} of {stack.home} is not running: start it with "
                f"`lookout stack up`, or set {setting} to use an external one"
            )
    return Services(
        kafka_bootstrap=settings.kafka_bootstrap or stack.kafka_bootstrap,
        redis_url=settings.redis_url or stack.redis_url,
    )


def _stop_spawned(proc: ManagedProcess, spawned: subprocess.Popen) -> str | None:
    """Stop a process this stack just started, through its pid file or, failing that,
    its handle, so a failed start never leaves it running."""
    outcome = proc.stop(timeout_s=10.0)
    if spawned.poll() is None:
        spawned.terminate()
        try:
            spawned.wait(timeout=10.0)
            outcome = "terminated"
        except subprocess.TimeoutExpired:
            spawned.kill()
            spawned.wait()
            outcome = "killed"
    return outcome
