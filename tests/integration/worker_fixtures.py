"""`worker_process`: start real `lookout worker` subprocesses against the test stack.

A subprocess (not an in-process app) so SIGKILL and SIGTERM tests are real. Workers use
the `trivial` encoders unless a test asks for others; each gets its own web port.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from encoders.modality import MODALITIES
from streams.config.settings import Settings
from streams.worker.process import WorkerProcess, http_get, settings_env
from tests.helpers import free_port

LOOKOUT_BIN = Path(sys.executable).with_name("lookout")


def lookout_cli(*args: str, api: str) -> subprocess.CompletedProcess:
    """Run the installed `lookout` CLI against a worker's API, without the test's
    LOOKOUT_* environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    return subprocess.run([str(LOOKOUT_BIN), *args, "--api", api], capture_output=True,
                          text=True, timeout=120, env=env)


@dataclass
class SpawnedWorker(WorkerProcess):
    """A worker started by a test: its environment and a JSON-aware GET."""

    env: dict[str, str] = field(default_factory=dict, repr=False)

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, Any]:
        """(status, parsed JSON or text) of a GET; (0, "") when nothing answers."""
        status, body = http_get(self.api_url + path, timeout_s)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode("utf-8", "replace")


LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"


def worker_env(settings: Settings, web_port: int, **overrides: str) -> dict[str, str]:
    """The environment a worker subprocess reads its settings from: the test's settings,
    CPU, `trivial` encoders, one thread, then `overrides`."""
    update: dict[str, object] = {"web_port": web_port, "device": "cpu"}
    update |= {f"encoder_{m.value}": "trivial" for m in MODALITIES}
    env = settings_env(settings.model_copy(update=update), os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    # The tests' webhook receivers listen on loopback, which the SSRF guard refuses.
    env.update(LOOKOUT_WEBHOOK_ALLOW_NETWORKS=LOOPBACK_NETWORKS)
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
    started: list[SpawnedWorker] = []

    def start(ready: bool = True, **env_overrides: str) -> SpawnedWorker:
        port = free_port()
        env = worker_env(settings, port, **env_overrides)
        worker = SpawnedWorker.start(env, f"http://127.0.0.1:{port}",
                                     tmp_path / f"worker-{len(started)}-{port}.log", tmp_path)
        worker.env = env
        started.append(worker)
        if ready:
            worker.wait_ready(90.0)
        return worker

    yield start
    for worker in started:
        worker.kill()


def started_together(start: Callable[..., SpawnedWorker], count: int,
                     **env_overrides: str) -> list[SpawnedWorker]:
    """`count` workers of `worker_process` (`start`) spawned at once, then each waited for:
    their start-ups (~3 s of single-threaded imports each, then the group join) overlap on
    the two cores instead of running one after the other. Ready means the same as for one."""
    workers = [start(ready=False, **env_overrides) for _ in range(count)]
    for worker in workers:
        worker.wait_ready(90.0)
    return workers
