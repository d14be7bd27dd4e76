"""Start, find and stop the stack's own server processes through pid files.

A pid file alone can lie (the pid may be reused after a reboot), so a process counts as
ours only while it is alive and its working directory is the one the stack gave it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from streams.core.errors import PortInUse, StackError

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on host:port (a bind test, as the server itself would do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def require_free_ports(ports: dict[str, int], setting_names: dict[str, str]) -> None:
    """Raise `PortInUse` naming the first taken port and the setting that moves it."""
    for label, port in ports.items():
        if not port_is_free(port):
            raise PortInUse(
                f"port {port} on {LOOPBACK} ({label}) is taken by a process this stack did "
                f"not start; stop that process or set {setting_names[label]} to a free port"
            )


def _is_alive(pid: int) -> bool:
    """True for a live, non-zombie process; reaps it when it is our exited child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cwd_of(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


@dataclass(frozen=True)
class ManagedProcess:
    """One server process of the stack: its pid file, log file and working directory."""

    name: str
    pid_file: Path
    log_file: Path
    workdir: Path

    def pid(self) -> int | None:
        """The pid of our running process, or None (the pid file of a dead one is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _is_alive(pid):
            with contextlib.suppress(OSError):
                self.pid_file.unlink()
            return None
        cwd = _cwd_of(pid)
        if cwd is None or cwd.resolve() == self.workdir.resolve():
            return pid
        # Alive elsewhere: a reused pid, not ours. Leave the file (a start overwrites it),
        # so a misread /proc entry can never make us forget a server that runs.
        return None

    def spawn(
        self, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        """Start the process detached (own session) with output appended to its log.

        The caller that waits for start-up keeps the returned handle: its `poll()` says
        for sure whether this very process is still running."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            now = datetime.now().isoformat(timespec="milliseconds")
            log.write(f"\n=== lookout {now}: starting {self.name}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    list(argv),
                    cwd=self.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise StackError(f"could not start {self.name} ({argv[0]}): {exc}") from exc
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def stop(self, timeout_s: float) -> str | None:
        """SIGTERM, wait up to timeout_s, then SIGKILL.

        Returns None when nothing ran, else "terminated" (exited on SIGTERM) or "killed".
        """
        pid = self.pid()
        if pid is None:
            return None
        outcome = "terminated"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not _is_alive(pid), timeout_s):
            outcome = "killed"
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _is_alive(pid), 10.0)
        with contextlib.suppress(OSError):
            self.pid_file.unlink()
        return outcome

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the log, for error messages that say why a start failed."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `check` until it is true or the timeout passes; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one home across processes (two shells, parallel tests)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
