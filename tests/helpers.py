"""Small helpers the test suites share: free loopback ports and unique names."""

from __future__ import annotations

import contextlib
import re
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


def metric_value(text: str, name: str, labels: str = "") -> float:
    """Sum of the samples called `name` in Prometheus text whose labels include `labels`
    (e.g. 'modality="logs"'), read with prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and wanted.items() <= sample.labels.items()
    )
