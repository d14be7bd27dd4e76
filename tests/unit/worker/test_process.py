"""Running a worker as a subprocess: its environment, readiness and shutdown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.config.settings import Settings
from streams.worker.process import WorkerProcess, WorkerProcessError, free_port, settings_env
from tests.helpers import wait_for


def test_settings_env_gives_a_subprocess_the_same_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "h", topic_prefix="demo-x", web_port=7001,
                        torch_compile=True, batch_size_logs=17, kafka_port=1234)
    env = settings_env(settings, {"PATH": "/bin", "LOOKOUT_TOPIC_PREFIX": "other"})
    assert env["PATH"] == "/bin"
    again = Settings(**{k.removeprefix("LOOKOUT_").lower(): v for k, v in env.items()
                        if k.startswith("LOOKOUT_")})
    assert again.topic_prefix == "demo-x"
    assert again.web_port == 7001 and again.torch_compile and again.batch_size_logs == 17
    assert again.kafka_bootstrap == "127.0.0.1:1234"
    assert again.home == tmp_path / "h"


def _python(code: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", code], stdout=out,
                                stderr=subprocess.STDOUT)


def test_a_worker_that_exits_while_starting_fails_with_its_exit_code_and_log(tmp_path: Path):
    log = tmp_path / "w.log"
    worker = WorkerProcess(f"http://127.0.0.1:{free_port()}",
                           _python("print('bad encoder spec'); raise SystemExit(3)", log), log)
    worker.proc.wait(timeout=30)
    with pytest.raises(WorkerProcessError, match=r"(?s)code 3.*bad encoder spec"):
        worker.wait_ready(timeout_s=5)


def test_a_worker_that_never_answers_is_reported_not_ready(tmp_path: Path):
    log = tmp_path / "w.log"
    worker = WorkerProcess(f"http://127.0.0.1:{free_port()}",
                           _python("import time; time.sleep(60)", log), log)
    try:
        with pytest.raises(WorkerProcessError, match="not ready after 1 s"):
            worker.wait_ready(timeout_s=1, poll_s=0.1)
    finally:
        worker.kill()
    assert worker.proc.returncode == -9


def test_stop_sends_sigterm_and_escalates_to_sigkill_when_ignored(tmp_path: Path):
    log = tmp_path / "w.log"
    graceful = WorkerProcess("http://127.0.0.1:1", _python("import time; time.sleep(60)", log), log)
    assert graceful.stop(timeout_s=10) == -15  # default SIGTERM handler: killed by it
    stubborn = WorkerProcess("http://127.0.0.1:1", _python(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)", log), log)
    assert wait_for(lambda: "ready" in log.read_text(), 30)
    assert stubborn.stop(timeout_s=0.5) == -9


def test_a_worker_someone_else_runs_is_neither_stopped_nor_checked():
    other = WorkerProcess("http://127.0.0.1:1")
    other.check_alive()
    assert other.stop() is None
    assert "did not start" in other.log_tail()
