"""Pid files name only processes the stack started; stop escalates from SIGTERM to SIGKILL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streams.core.errors import PortInUse
from streams.embedded.processes import (
    ManagedProcess,
    port_is_free,
    require_free_ports,
    wait_until,
)


def _managed(tmp_path: Path) -> ManagedProcess:
    return ManagedProcess(
        "sleeper", tmp_path / "pids" / "s.pid", tmp_path / "s.log", tmp_path / "w"
    )


def test_a_listening_port_is_reported_taken_with_the_setting_to_change() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        assert not port_is_free(port)
        with pytest.raises(PortInUse, match=f"port {port} .*LOOKOUT_REDIS_PORT"):
            require_free_ports({"Redis": port}, {"Redis": "LOOKOUT_REDIS_PORT"})
    assert port_is_free(port)


def test_a_started_process_is_found_and_stopped_by_sigterm(tmp_path: Path) -> None:
    proc = _managed(tmp_path)
    pid = proc.spawn(["sleep", "60"]).pid

    assert proc.pid() == pid
    assert proc.stop(timeout_s=10) == "terminated"
    assert proc.pid() is None
    assert not proc.pid_file.exists()
    assert "starting sleeper" in proc.log_file.read_text()


def test_a_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    proc = _managed(tmp_path)
    ignore_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('now ' + 'ignoring', flush=True); time.sleep(60)"
    )  # the log also echoes argv, so the marker must not appear in it literally
    proc.spawn([sys.executable, "-c", ignore_term])
    assert wait_until(lambda: "now ignoring" in proc.log_file.read_text(), timeout_s=30)

    assert proc.stop(timeout_s=0.5) == "killed"
    assert proc.pid() is None


def test_a_pid_file_naming_someone_elses_process_is_ignored(tmp_path: Path) -> None:
    proc = _managed(tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text(f"{os.getpid()}\n")  # alive, but its cwd is not the workdir

    assert proc.pid() is None
    assert proc.stop(timeout_s=1) is None  # and that process is left alone


def test_a_stale_pid_file_is_cleaned_up(tmp_path: Path) -> None:
    proc = _managed(tmp_path)
    finished = subprocess.Popen(["true"])
    finished.wait()
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text(f"{finished.pid}\n")

    assert proc.pid() is None
    assert not proc.pid_file.exists()


def test_a_missing_program_is_a_stack_error(tmp_path: Path) -> None:
    from streams.core.errors import StackError

    with pytest.raises(StackError, match="could not start sleeper"):
        _managed(tmp_path).spawn(["/no/such/program"])


def test_a_failed_start_stops_its_process_even_when_the_pid_file_is_gone(tmp_path: Path) -> None:
    from streams.embedded.stack import _stop_spawned

    proc = _managed(tmp_path)
    handle = proc.spawn(["sleep", "60"])
    proc.pid_file.unlink()  # lost track of it: stop() alone finds nothing
    assert proc.stop(timeout_s=1) is None

    assert _stop_spawned(proc, handle) == "terminated"
    assert handle.returncode is not None
