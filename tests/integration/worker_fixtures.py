"""`worker_process`: start real `lookout worker` subprocesses against the test stack.

A subprocess (not an in-process app) so SIGKILL and SIGTERM tests are real. Workers use
the `trivial` encoders unless a test asks for others; each gets its own web port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.settings import MODALITIES, Settings
from tests.helpers import free_port

LOOKOUT_BIN = Path(sys.executable).with_name("lookout")


@dataclass
class WorkerProcess:
    """A running `lookout worker` and how to talk to it."""

    proc: subprocess.Popen
    web_port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, Any]:
        """(status, parsed JSON or text) of a GET; (0, reason) when nothing answers."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as resp:
                body = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        except (urllib.error.URLError, OSError) as e:
            return 0, str(e)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until /readyz says ready (assignment received, indexes ensured)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            status, _ = self.get("/readyz", timeout_s=2)
            if status == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout_s}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crashed machine."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise AssertionError(
                    f"worker ignored SIGTERM for {timeout_s}s:\n{self.log_tail()}") from None
        return self.proc.returncode


def worker_env(settings: Settings, web_port: int, **overrides: str) -> dict[str, str]:
    """The environment a worker subprocess reads its settings from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    env.update(
        LOOKOUT_HOME=str(settings.home),
        LOOKOUT_KAFKA_BOOTSTRAP=settings.resolved_kafka_bootstrap(),
        LOOKOUT_REDIS_URL=settings.resolved_redis_url(),
        LOOKOUT_TOPIC_PREFIX=settings.topic_prefix,
        LOOKOUT_WORKER_ID=settings.worker_id,
        LOOKOUT_PARTITIONS=str(settings.partitions),
        LOOKOUT_WEB_PORT=str(web_port),
        LOOKOUT_DEVICE="cpu",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    for m in MODALITIES:
        env[f"LOOKOUT_ENCODER_{m.value.upper()}"] = "trivial"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@pytest.fixture
def worker_process(
    settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: `worker_process(LOOKOUT_BATCH_SIZE_LOGS="8", ready=True)` starts one worker.

    Keyword arguments are extra environment variables; every worker started is killed at
    the end of the test if it is still running.
    """
    started: list[WorkerProcess] = []

    def start(ready: bool = True, **env_overrides: str) -> WorkerProcess:
        port = free_port()
        log_path = tmp_path / f"worker-{len(started)}-{port}.log"
        env = worker_env(settings, port, **env_overrides)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(LOOKOUT_BIN), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        worker = WorkerProcess(proc, port, log_path, env)
        started.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()
