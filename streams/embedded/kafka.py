"""A single-node Apache Kafka (KRaft) assembled from Maven Central jars, run as a child JVM.

Jars come from `pom.xml` beside this module via `mvn dependency:copy-dependencies` into a
per-version cache outside the work tree; storage is formatted once so topics survive restarts.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from streams.core.errors import StackError

from .processes import LOOPBACK, ManagedProcess

log = logging.getLogger(__name__)

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
INSTALLED_MARKER = ".installed"


def default_cache_dir() -> Path:
    """Where Kafka jars are cached, shared by every Lookout checkout of this user."""
    return Path.home() / ".cache" / "lookout"


@dataclass(frozen=True)
class KafkaJars:
    """The jar directory of one Kafka version and how to fill it with Maven."""

    version: str
    cache_dir: Path

    @property
    def libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{self.version}" / "libs"

    @property
    def installed(self) -> bool:
        return (self.libs_dir / INSTALLED_MARKER).is_file()

    @property
    def classpath(self) -> str:
        return str(self.libs_dir / "*")

    @property
    def class_archive(self) -> Path:
        """A JVM class-data-sharing archive of Kafka's classes: it halves the broker's start."""
        return self.libs_dir.parent / "kafka-classes.jsa"

    def install(self, mvn: str = "mvn") -> bool:
        """Copy the jars with Maven unless present. True when it downloaded something."""
        if self.installed:
            return False
        if shutil.which(mvn) is None:
            raise StackError(
                "Maven (mvn) is needed once to fetch the Kafka jars: install it "
                "(e.g. `apt-get install maven`) and run `lookout stack install` again"
            )
        staging = self.libs_dir.with_name(f"libs.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        pom = resources.files("streams.embedded").joinpath("pom.xml")
        with resources.as_file(pom) as pom_path:
            argv = [
                mvn, "-q", "-B", "-f", str(pom_path),
                f"-Dkafka.version={self.version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
            ]  # fmt: skip
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not (staging / f"kafka_2.13-{self.version}.jar").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise StackError(
                f"Maven could not fetch Kafka {self.version} (org.apache.kafka:kafka_2.13); "
                f"check the version and network access to Maven Central:\n{tail}"
            )
        (staging / INSTALLED_MARKER).write_text(f"kafka {self.version}\n")
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        self.class_archive.unlink(missing_ok=True)  # built from the jars being replaced
        staging.rename(self.libs_dir)
        return True


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: 16 random bytes, base64url, 22 characters. Like Kafka's own
    `Uuid.randomUuid()`, never one that starts with "-": kafka-storage's argument parser
    would take `-t -abc...` for an option (1 in 64 ids; it failed `stack up` at random)."""
    while True:
        new = base64.urlsafe_b64encode(random_bytes()).rstrip(b"=").decode()
        if not new.startswith("-"):
            return new


@dataclass(frozen=True)
class KafkaNode:
    """One broker+controller on loopback with its config, data and log under `home`."""

    home: Path
    port: int
    controller_port: int
    jars: KafkaJars
    partitions: int = 4
    heap: str = "512m"
    java: str = "java"

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def workdir(self) -> Path:
        return self.home / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def config_file(self) -> Path:
        return self.workdir / "server.properties"

    def process(self, pids_dir: Path, logs_dir: Path) -> ManagedProcess:
        return ManagedProcess("kafka", pids_dir / "kafka.pid", logs_dir / "kafka.log", self.workdir)

    def server_properties(self) -> str:
        """The broker config: one KRaft node, loopback only, small internal topics."""
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{self.port},CONTROLLER://{LOOPBACK}:"
            f"{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "true",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # Two cores are shared by everything: keep thread pools and buffers small.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "message.max.bytes": str(8 * 1024 * 1024),
        }
        lines = ["# Written by lookout; regenerated on every `lookout stack up`."]
        lines += [f"{key}={value}" for key, value in props.items()]
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.server_properties())

    @property
    def pending_archive_note(self) -> Path:
        """Names the class archive this home's running broker writes when it exits."""
        return self.workdir / "class-archive.pending"

    def _class_sharing_args(self, create: bool) -> list[str]:
        archive = self.jars.class_archive
        if archive.is_file():
            return [f"-XX:SharedArchiveFile={archive}"]
        if not create:
            return []
        pending = archive.with_name(f"{archive.name}.tmp-{uuid.uuid4().hex[:8]}")
        self.pending_archive_note.write_text(str(pending))
        return [f"-XX:ArchiveClassesAtExit={pending}"]

    def after_stop(self, outcome: str | None) -> None:
        """Publish the class archive a cleanly stopped broker wrote; drop a partial one."""
        with contextlib.suppress(OSError):
            pending = Path(self.pending_archive_note.read_text().strip())
            self.pending_archive_note.unlink()
            if outcome == "terminated" and pending.is_file() and pending.stat().st_size > 0:
                os.replace(pending, self.jars.class_archive)
            else:
                pending.unlink(missing_ok=True)

    def _jvm(
        self, main: str, *args: str, heap: str | None = None, create_archive: bool = False
    ) -> list[str]:
        heap = heap or self.heap
        return [
            self.java,
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseSerialGC",
            "-Xss512k",
            *self._class_sharing_args(create_archive),
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
            "-cp",
            self.jars.classpath,
            main,
            *args,
        ]

    def cluster_id(self) -> str:
        """A stable cluster id, created once per home."""
        id_file = self.workdir / "cluster.id"
        with contextlib.suppress(OSError):
            existing = id_file.read_text().strip()
            if existing:
                return existing
        new = new_cluster_id()
        self.workdir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(new + "\n")
        return new

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def format_storage(self) -> bool:
        """Format the KRaft storage once. True when it formatted now."""
        if self.formatted:
            return False
        if not self.jars.installed:
            raise StackError("the Kafka jars are missing; run `lookout stack install` first")
        argv = self._jvm(
            STORAGE_TOOL, "format", f"--cluster-id={self.cluster_id()}",
            f"--config={self.config_file}", heap="256m",
        )  # "=": an id of an older home may start with "-", which argparse reads as an option
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-10:])
            raise StackError(f"formatting Kafka storage in {self.data_dir} failed:\n{tail}")
        return True

    def start(self, proc: ManagedProcess) -> subprocess.Popen:
        if shutil.which(self.java) is None:
            raise StackError("Java 17+ is needed to run Kafka: install a JRE (e.g. openjdk-17)")
        self.write_config()
        self.format_storage()
        self.after_stop(None)  # a pending archive left by a crashed broker is partial
        return proc.spawn(self._jvm(KAFKA_MAIN, str(self.config_file), create_archive=True))

    def is_ready(self, timeout_ms: int = 2000) -> bool:
        return kafka_is_ready(self.bootstrap, timeout_ms)


def _accepts_connections(address: str, timeout_s: float = 0.5) -> bool:
    """A cheap TCP check first, so polling a starting broker does not wait on client timeouts."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or LOOPBACK, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def kafka_is_ready(bootstrap: str, timeout_ms: int = 2000) -> bool:
    """Ready = a metadata call (describe cluster) answers with at least one unfenced broker."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if not _accepts_connections(bootstrap.split(",")[0]):
        return False
    admin = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="lookout-stack-probe",
        )
        cluster = admin.describe_cluster()
    except (KafkaError, OSError, ValueError) as exc:
        log.debug("kafka at %s not ready: %s", bootstrap, exc)
        return False
    finally:
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()
    brokers = cluster.get("brokers") or []
    return any(not b.get("is_fenced", False) for b in brokers)
