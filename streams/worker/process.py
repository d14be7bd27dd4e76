"""A `lookout worker` run as a subprocess: start it, wait for `/readyz`, stop it.

`lookout demo`, `lookout bench pipeline` and the integration tests all run real workers
as separate processes (so SIGTERM and SIGKILL behave as in production); this is the one
place that knows how.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from streams.config.settings import Settings
from streams.core.errors import LookoutError


class WorkerProcessError(LookoutError):
    """A worker subprocess exited early or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout_s: float = 3.0) -> tuple[int, bytes]:
    """(status, body); (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def settings_env(settings: Settings, base_env: Mapping[str, str]) -> dict[str, str]:
    """The environment that gives a subprocess these exact settings (LOOKOUT_* replaced)."""
    env = {k: v for k, v in base_env.items() if not k.startswith("LOOKOUT_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, Path):  # the subprocess may run in another directory
            value = value.absolute()
        env[f"LOOKOUT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) \
            else str(value)
    env["LOOKOUT_KAFKA_BOOTSTRAP"] = settings.resolved_kafka_bootstrap()
    env["LOOKOUT_REDIS_URL"] = settings.resolved_redis_url()
    return env


def worker_command() -> list[str]:
    """`lookout worker` from this interpreter's environment."""
    script = Path(sys.executable).with_name("lookout")
    if script.exists():
        return [str(script), "worker"]
    return [sys.executable, "-c", "from streams.cli import main; main()", "worker"]


@dataclass
class WorkerProcess:
    """A worker answering at `api_url`; `proc` is None for one that someone else runs."""

    api_url: str
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @classmethod
    def start(
        cls, env: Mapping[str, str], api_url: str, log_path: Path, cwd: Path | None = None
    ) -> WorkerProcess:
        """Spawn `lookout worker` with `env`, appending its output to `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                worker_command(), env=dict(env), cwd=cwd, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return cls(api_url, proc, log_path)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "(no log: a worker this process did not start)"
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        """Raise with the end of its log if the worker we started has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise WorkerProcessError(
                f"the worker exited with code {self.proc.returncode}; its log "
                f"{self.log_path} ends with:\n{self.log_tail()}")

    def metrics_text(self) -> str:
        status, body = http_get(self.api_url + "/metrics")
        return body.decode("utf-8", "replace") if status == 200 else ""

    def wait_ready(self, timeout_s: float, poll_s: float = 0.3) -> float:
        """Poll `/readyz` until it answers 200; returns the `perf_counter()` at which the
        last not-ready probe was sent (the latest moment the worker was surely not ready)."""
        deadline = time.monotonic() + timeout_s
        last_not_ready = time.perf_counter()
        body = b""
        while time.monotonic() < deadline:
            self.check_alive()
            sent = time.perf_counter()
            status, body = http_get(self.api_url + "/readyz", timeout_s=2.0)
            if status == 200:
                return last_not_ready
            last_not_ready = sent
            time.sleep(poll_s)
        raise WorkerProcessError(
            f"the worker at {self.api_url} was not ready after {timeout_s:.0f} s "
            f"({body.decode('utf-8', 'replace')[:300]}); its log {self.log_path} ends "
            f"with:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait (the worker finishes the batch in hand and commits); SIGKILL
        if it hangs. Returns the exit code (-9 after a SIGKILL), None if not ours."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crashed machine."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()  # SIGKILL cannot be caught: the kernel reaps it promptly
