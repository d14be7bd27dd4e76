"""Small helpers the test suites share: free loopback ports and unique names."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, held open together so they cannot repeat."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def unique_name(prefix: str = "t") -> str:
    """A name no other test uses: topics, consumer groups, index prefixes."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(check: Callable[[], bool], timeout_s: float = 30.0, interval_s: float = 0.1) -> bool:
    """Poll until `check()` is true; False on timeout, so the test asserts with context."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()
